"""The end-to-end loop benchmark at smoke size: the real training loop (its own steady-state
clock, `throughput.json`) timed against the bare step; the suite's command lines."""

from __future__ import annotations

import jax
import numpy as np

from benchmarks import loop, loop_suite
from benchmarks.device_suite import Entry
from configs import semi_supervised as ssl_config
from configs import tend as tend_config
from mlsup_jax.core.loop_clock import PHASES


def test_loop_and_bare_step_are_both_measured():
  config = ssl_config.get_config("smoke,kind=labelled_only")
  with config.unlocked():
    config.mesh.data = 1  # one device: the CI size
  row = loop.measure(config, steps=4, iters=2, devices=jax.devices()[:1])
  for key in ("loop_ms_per_step", "step_ms", "loop_examples_per_s", "step_examples_per_s"):
    assert np.isfinite(row[key]) and row[key] > 0, key
  assert row["ratio"] == row["step_ms"] / row["loop_ms_per_step"]
  assert row["stage"] == "train" and row["loop_steps"] == 3  # the compiling step left out
  assert set(row["phases_ms_per_step"]) == set(PHASES)
  assert "| train | cpu" in loop.markdown_row("x", row, "cpu ×1", 0.0)


def test_the_compared_stage_gets_the_steps():
  """TEND's stages have lengths of their own: `--steps` sets the compared one's."""
  config = loop._with_steps(tend_config.get_config("smoke"), 40, "margin")
  assert config.train.margin_steps == 40 and "num_steps" not in config.train
  assert config.train.autoencoder_steps == tend_config.get_config("smoke").train.autoencoder_steps
  config = loop._with_steps(ssl_config.get_config("smoke"), 40, "train")
  assert config.train.num_steps == 40 and not config.train.tensorboard


def test_suite_command_lines():
  entry = Entry("ltuda", "ltuda", stage="cda", overrides=(("ltuda.check_labels", False),))
  cmd = loop_suite.command(entry, "smoke", "production", 200, 5, "out.md")
  assert cmd[1:4] == ["-m", "benchmarks.loop", "--config=configs/ltuda.py:smoke"]
  assert "--config.ltuda.check_labels=False" in cmd and "--stage=cda" in cmd
  assert "--config.train.log_every=25" in cmd and "--config.train.checkpoint_every=100" in cmd
  assert cmd[-3:] == ["--steps=200", "--iters=5", "--out=out.md"]
  assert not any(
    "log_every" in c for c in loop_suite.command(entry, "default", "configured", 9, 1, "o")
  )
  assert "embedding_retrieval" not in {e.name for e in loop_suite.ENTRIES}
