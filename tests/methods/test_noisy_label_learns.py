"""At high label noise MCPM's meta mask learns to down-weight the corrupted pixels.

One `launch.train` run of `configs/mcpm.py:small` with r = 0.8 dilation noise (600 steps, a
subprocess on one CPU device, as the main job runs). The training log carries the mean meta
weight on pixels whose noisy label differs from the clean one (`weight_noisy_pixels`; the clean
labels ride along for this diagnostic only, never trained on) and on the other pixels
(`weight_clean_pixels`). A meta network that learned nothing gives both the same weight.

What this does NOT show (README, noisy-label section): the same at r = 0.4, where the mask
weights corrupted pixels *higher* (0.99 vs 0.84), nor that MCPM's mean Dice beats the U-Net
trained on the same noisy labels — on our phantom that ordering is within noise at r = 0.4 and
reversed at r = 0.8 (the small lesion classes suffer) — so no test asserts them.
"""

import json

import pytest
from one_device_run import run_launch_train

pytestmark = pytest.mark.slow


def _train_rows(workdir) -> list[dict]:
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [r for r in rows if "train/weight_noisy_pixels" in r]


def test_mcpm_meta_mask_down_weights_corrupted_pixels(tmp_path):
  run = run_launch_train(
    "--config=configs/mcpm.py:small,ratio=0.8",
    f"--workdir={tmp_path}",
    "--config.train.checkpoint_every=1000",
  )
  assert run.returncode == 0, run.stderr[-3000:]
  rows = _train_rows(tmp_path)
  late = rows[-3:]  # the last 150 steps (logged every 50)
  noisy = sum(r["train/weight_noisy_pixels"] for r in late) / len(late)
  clean = sum(r["train/weight_clean_pixels"] for r in late) / len(late)
  print(f"meta weight: corrupted pixels {noisy:.3f}, clean pixels {clean:.3f}")
  assert noisy < RATIO_MAX * clean
  results = json.loads((tmp_path / "eval_results.json").read_text())
  assert results["dice/liver"] > DICE_LIVER_MIN  # it still segments (untrained: ≈ 0)


# Measured on this run (README): corrupted 0.085, clean 0.342 over the last 150 steps (ratio
# 0.25); liver Dice 0.71. Thresholds leave a clear margin.
RATIO_MAX = 0.5
DICE_LIVER_MIN = 0.5
