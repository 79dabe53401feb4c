"""The end-to-end loop benchmark at smoke size: the real training loop timed against the bare
step, the one-time costs cancelled by differencing two run lengths."""

from __future__ import annotations

import jax
import numpy as np

from benchmarks import loop
from configs import semi_supervised as ssl_config


def test_loop_and_bare_step_are_both_measured():
  config = ssl_config.get_config("smoke,kind=labelled_only")
  with config.unlocked():
    config.mesh.data = 1  # one device: the CI size
  row = loop.measure(config, steps=3, iters=2, devices=jax.devices()[:1])
  for key in ("loop_ms_per_step", "step_ms", "loop_examples_per_s", "step_examples_per_s"):
    assert np.isfinite(row[key]) and row[key] > 0, key
  assert row["ratio"] == row["step_ms"] / row["loop_ms_per_step"]
