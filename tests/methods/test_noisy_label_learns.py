"""MCPM and PINT learn under label noise: each beats plain training on the same noisy labels.

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

PINT (`configs/pint.py:small`, same phantom, target and r = 0.4) trained for 3000 steps, long
enough for plain training to memorise the noisy masks (its validation Dice falls from 0.904 at 600
steps to 0.849): (3) PINT's Dice and mIoU are higher and its ASD lower than plain training's
(`variant=none`: the same loop, optimizer and data with the EMA teacher unused). Not asserted
(README, noisy-label section): PINT > plain at 600 steps and r = 0.4, which is a tie on this
phantom (PINT ahead in 2 of 3 seeds; below 50 % noise plain cross-entropy already follows the
majority label at the rim).
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


def test_pint_beats_plain_training_when_plain_training_memorises_the_noise(tmp_path):
  config = "configs/pint.py:small,ratio=0.4,steps=3000"
  plain, _ = _train(tmp_path, "plain", f"{config},variant=none")
  pint, _ = _train(tmp_path, "pint", config)
  print(f"Dice: PINT {pint['dice']:.3f}, plain {plain['dice']:.3f}")
  assert pint["dice"] > plain["dice"]
  assert pint["miou"] > plain["miou"]
  assert pint["asd"] < plain["asd"]


# Measured on these runs (README; 2-core CPU): Dice MCPM 0.927 vs U-Net 0.884 (seeds 1 / 2:
# 0.913 vs 0.870, 0.923 vs 0.899); mean meta weight of corrupted vs clean pixels over the last 150
# steps 0.090 vs 1.083 (ratio 0.08; seeds 1 / 2: 0.15, 0.12). The ratio bound leaves a wide margin.
# PINT vs plain at r = 0.4, 3000 steps: Dice 0.866 vs 0.847, mIoU 0.834 vs 0.812, ASD 0.89 vs 1.04
# (seeds 1 / 2: Dice 0.867 vs 0.824, 0.874 vs 0.854; mIoU 0.836 vs 0.784, 0.844 vs 0.820).
RATIO_MAX = 0.5
