"""MORSE learns: on the cardiac phantom its refined prediction beats its own coarse one, and
backbone + MORSE beats the backbone alone.

Runs `configs/morse.py:small` (U-Net backbone, 400 steps, seed 0) with and without the head on
one CPU device in subprocesses (about a minute each). Both orderings hold on every seed of the
3-seed study on docs/results/morse.md.
"""

import json
import os

import pytest
from one_device_run import run_launch_train


def _train(tmp_path, options: str) -> dict:
  workdir = os.path.join(tmp_path, options.replace(",", "_").replace("=", "-"))
  done = run_launch_train(f"--config=configs/morse.py:{options}", f"--workdir={workdir}")
  assert done.returncode == 0, done.stderr[-4000:]
  with open(os.path.join(workdir, "eval_results.json")) as f:
    return json.load(f)


@pytest.mark.slow
def test_refined_beats_coarse_and_morse_beats_the_backbone(tmp_path):
  morse = _train(tmp_path, "small")
  # The refinement re-predicts only uncertain pixels; on label boundaries and on Dice it wins.
  assert morse["boundary_accuracy"] > morse["coarse/boundary_accuracy"], morse
  assert morse["dice"] > morse["coarse/dice"], morse
  alone = _train(tmp_path, "small,variant=backbone")
  assert morse["dice"] > alone["dice"], (morse["dice"], alone["dice"])
