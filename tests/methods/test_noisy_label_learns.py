"""MCPM learns under label noise: it beats the U-Net trained on the same noisy labels.

Two `launch.train` runs (subprocesses on one CPU device, as README's commands run) of
`configs/mcpm.py:small` — the binary liver target of the abdominal CT phantom, 40 % of the
training masks dilated (r = 0.4), 600 steps, seed 0 — one with MCPM's meta mask, one without
(`variant=unet`: the same U-Net, optimizer and data, no re-weighting). Evaluated on the clean
labels of the test slices.

Asserted: (1) MCPM's Dice is higher than the U-Net's (the paper's ordering, seed 0; README gives
the spread over seeds 0–2); (2) the meta mask learned *which* pixels to trust: over the last 150
steps it weights pixels whose noisy label differs from the clean one (`weight_noisy_pixels`; the
clean labels ride along for this diagnostic only, never trained on) less than half as much as
the others. A meta network that learned nothing gives both the same weight.

Not asserted (README, noisy-label section): PINT > plain training, which does not hold on this
phantom (at r = 0.4 plain cross-entropy is close to the majority vote of the labels, and PINT's
pseudo-label loss only takes supervision away from the boundary).
"""

import json

import pytest
from one_device_run import run_launch_train

pytestmark = pytest.mark.slow


def _train(tmp_path, name: str, config: str) -> tuple[dict, list[dict]]:
  workdir = tmp_path / name
  run = run_launch_train(
    f"--config={config}", f"--workdir={workdir}", "--config.train.checkpoint_every=1000"
  )
  assert run.returncode == 0, run.stderr[-3000:]
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  results = json.loads((workdir / "eval_results.json").read_text())
  return results, [r for r in rows if "train/weight_noisy_pixels" in r]


def test_mcpm_beats_the_unet_on_noisy_labels_and_down_weights_corrupted_pixels(tmp_path):
  unet, _ = _train(tmp_path, "unet", "configs/mcpm.py:small,variant=unet,ratio=0.4")
  mcpm, rows = _train(tmp_path, "mcpm", "configs/mcpm.py:small,ratio=0.4")
  print(f"Dice: MCPM {mcpm['dice']:.3f}, U-Net {unet['dice']:.3f}")
  assert mcpm["dice"] > unet["dice"]
  assert mcpm["miou"] > unet["miou"]

  late = rows[-3:]  # the last 150 steps (logged every 50)
  noisy = sum(r["train/weight_noisy_pixels"] for r in late) / len(late)
  clean = sum(r["train/weight_clean_pixels"] for r in late) / len(late)
  print(f"meta weight: corrupted pixels {noisy:.3f}, clean pixels {clean:.3f}")
  assert noisy < RATIO_MAX * clean


# Measured on these runs (README): MEASURED. The weight ratio is the mechanism, with a margin.
RATIO_MAX = 0.5
