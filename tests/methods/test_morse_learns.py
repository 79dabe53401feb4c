"""MORSE learns: on the cardiac phantom its refined prediction beats its own coarse one, and
backbone + MORSE beats the backbone alone.

Runs `configs/morse.py:small` (U-Net backbone, 400 steps, seed 0) as MORSE and as the backbone
alone, on one CPU device in subprocesses (about a minute each). Every ordering asserted holds on
every seed of the 3-seed study on docs/results/morse.md on the three CPUs it was run on (AMD
AVX2, Intel AVX-512, AMD AVX-512: round-off differs, and moves Dice by up to 0.01 a seed). MORSE
above MoE only held on 3 / 3 seeds on one and 2 / 3 on another (margins 0.004–0.007), and the
refinement above the coarse prediction on boundary pixels on 3 / 3, 3 / 3 and 2 / 3 (seed 0 on
the AMD AVX-512 CPU: 0.773 vs 0.776): reported there, not asserted.
"""

import pytest
from one_device_run import train_and_results


def _train(tmp_path, options: str) -> dict:
  return train_and_results(tmp_path, "morse.py", options)


@pytest.mark.slow
def test_refined_beats_coarse_and_morse_beats_the_backbone(tmp_path):
  morse = _train(tmp_path, "small")
  # The refinement re-predicts only uncertain pixels; on Dice it wins on every seed and CPU.
  assert morse["dice"] > morse["coarse/dice"], morse
  alone = _train(tmp_path, "small,variant=backbone")
  assert morse["dice"] > alone["dice"], (morse["dice"], alone["dice"])
