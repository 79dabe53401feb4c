r"""End-to-end training throughput: the real loop against the bare jitted step.

  python -m benchmarks.loop --config=configs/scunet.py:smoke --steps=24
  python -m benchmarks.loop --config=configs/semi_supervised.py:small,kind=fixmatch --steps=100 \
      --out=benchmarks/results/loop.md

The loop is `trainer.train_and_evaluate` as a user runs it — input pipeline, host → device
transfers, logging and checkpoints at the config's cadence, evaluation — run twice in fresh
workdirs, for `--steps` and for twice as many steps, after one untimed run that pays the
process's one-time costs. Its time per step is the difference of the two wall times over
`--steps`: setup, compilation and evaluation cost the same in both runs and cancel. The bare
step is `harness.benchmark_config` (one batch re-used, compiled ahead of time, median step).
Prints (and with `--out`, appends) the examples/s of both and their ratio; a ratio well below 1
means the loop, not the step, sets the speed.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from benchmarks import harness
from mlsup_jax.core import trainer


def define_flags() -> None:
  """The command-line flags (defined on demand: tests import this module next to others)."""
  config_flags.DEFINE_config_file("config", None, "Method config file.", lock_config=True)
  flags.DEFINE_integer("steps", 50, "Steps of the shorter loop run (the longer: twice).")
  flags.DEFINE_integer("iters", 10, "Timed steps of the bare-step measurement.")
  flags.DEFINE_string("out", "", "Markdown file to append the result to (optional).")
  flags.mark_flags_as_required(["config"])


def _with_steps(config, steps: int):
  config = copy.deepcopy(config)
  with config.unlocked():
    # `train.num_steps` only: stages with lengths of their own (pretraining) run in both loop
    # runs alike and cancel in the difference.
    config.train.num_steps = steps
    config.train.tensorboard = False
  return config


def loop_seconds(config, steps: int, devices=None) -> float:
  """Wall seconds of `train_and_evaluate(config with num_steps=steps)` in a fresh workdir."""
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    run_config = _with_steps(config, steps)
    trainer.train_and_evaluate(run_config, os.path.join(workdir, "run"), devices)
    return time.perf_counter() - start


def measure(config, steps: int, iters: int = 10, devices=None) -> dict:
  """`{"loop_ms_per_step", "step_ms", "loop_examples_per_s", "step_examples_per_s", "ratio"}`.

  Example:
    >>> from configs import scunet
    >>> from benchmarks.loop import measure
    >>> row = measure(scunet.get_config("smoke"), steps=8, iters=2)  # doctest: +SKIP
  """
  loop_seconds(config, steps, devices)  # Untimed: one-time costs (phantoms, first compiles).
  short = loop_seconds(config, steps, devices)
  long = loop_seconds(config, 2 * steps, devices)
  loop_ms = 1e3 * max(long - short, 1e-9) / steps
  bare = harness.benchmark_config(config, warmup=2, iters=iters, devices=devices)
  batch = bare["batch_size"]
  return {
    "loop_ms_per_step": loop_ms,
    "step_ms": bare["step_ms_median"],
    "loop_examples_per_s": 1e3 * batch / loop_ms,
    "step_examples_per_s": bare["examples_per_s"],
    "ratio": bare["step_ms_median"] / loop_ms,
  }


def main(argv):
  del argv
  flag = flags.FLAGS["config"]
  name = os.path.basename(config_flags.get_config_filename(flag))
  load = os.getloadavg()[0]
  row = measure(flags.FLAGS.config, flags.FLAGS.steps, flags.FLAGS.iters)
  device = f"{jax.devices()[0].device_kind} ×{len(jax.devices())}"
  text = (
    f"| `{name}` | {device} | {row['loop_ms_per_step']:.1f} | {row['step_ms']:.1f} | "
    f"{row['loop_examples_per_s']:.1f} | {row['step_examples_per_s']:.1f} | {row['ratio']:.2f} | "
    f"{load:.1f} |\n"
  )
  header = (
    "| config | device | loop ms/step | bare step ms | loop examples/s | step examples/s | "
    "step / loop | load |\n|---|---|---|---|---|---|---|---|\n"
  )
  print(header + text)
  if flags.FLAGS.out:
    exists = os.path.exists(flags.FLAGS.out)
    with open(flags.FLAGS.out, "a") as f:
      f.write(text if exists else header + text)


if __name__ == "__main__":
  define_flags()
  app.run(main)
