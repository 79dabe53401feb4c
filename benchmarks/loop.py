r"""End-to-end training throughput: the real loop against the bare jitted step.

  python -m benchmarks.loop --config=configs/scunet.py:smoke --steps=24
  python -m benchmarks.loop --config=configs/semi_supervised.py:small,kind=fixmatch --steps=100 \
      --out=benchmarks/results/loop.md
  python -m benchmarks.loop --config=configs/tend.py --stage=margin --steps=40
  python -m benchmarks.loop --config=configs/segmentation.py:smoke --steps=200 --split_cores=0:1

The loop is `trainer.train_and_evaluate` as a user runs it — input pipeline, host → device
transfers, logging and checkpoints at the config's cadence, evaluation — in a fresh workdir, with
the compared stage `--steps` long (`train.<stage>_steps` for methods whose stages have lengths of
their own, else `train.num_steps`). Its time per step is the trainer's own steady-state figure
(`<workdir>/throughput.json`, `core/loop_clock.py`): the stage's wall time with the dispatches
that compile left out, so compilation, setup and evaluation do not count and one run suffices.
The bare step is `harness.benchmark_config` (one batch re-used, compiled ahead of time, median
step) of the same stage. Prints (and with `--out`, appends) the examples/s of both, their ratio
(bare step time / loop time per step: 1 = the loop adds nothing) and where the loop's host time
went (`phases`, seconds per step); a ratio well below 1 means the loop, not the step, sets the
speed.

On a CPU the step and the host's work share the cores; `--split_cores=HOST:DEVICE` pins XLA's
runtime threads to the DEVICE cores and everything else to the HOST cores for both
measurements (`core_split.py`), and prints where the process's CPU time went.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile

import jax
from absl import app, flags
from ml_collections import config_flags

from benchmarks import core_split, harness
from mlsup_jax.core import loop_clock, trainer


def define_flags() -> None:
  """The command-line flags (defined on demand: tests import this module next to others)."""
  config_flags.DEFINE_config_file("config", None, "Method config file.", lock_config=True)
  flags.DEFINE_integer("steps", 50, "Length of the compared stage in the loop run.")
  flags.DEFINE_integer("iters", 10, "Timed steps of the bare-step measurement.")
  flags.DEFINE_string("out", "", "Markdown file to append the result to (optional).")
  flags.DEFINE_string("stage", None, "Stage to compare (default: the method's first).")
  flags.DEFINE_string(
    "split_cores",
    "",
    "HOST:DEVICE core lists (e.g. '0:1' or '0:1,2,3'): pin XLA's CPU runtime to the DEVICE cores "
    "and everything else to the HOST cores, emulating an accelerator host (benchmarks/core_split"
    ".py). Default: no pinning.",
  )
  flags.mark_flags_as_required(["config"])


def _with_steps(config, steps: int, stage: str):
  config = copy.deepcopy(config)
  with config.unlocked():
    # The timed stage's length: `train.<stage>_steps` where stages have lengths of their own
    # (TEND, CVAD, PMS), else `train.num_steps`.
    own = f"{stage}_steps"
    config.train[own if own in config.train else "num_steps"] = steps
    config.train.tensorboard = False
  return config


def loop_throughput(config, steps: int, stage: str, devices=None) -> dict[str, dict]:
  """Runs `train_and_evaluate` with `stage` `steps` long in a fresh workdir and returns its
  `throughput.json` (per stage: steps, seconds, steps_per_s, examples_per_s, phases, …)."""
  with tempfile.TemporaryDirectory() as workdir:
    run_dir = os.path.join(workdir, "run")
    trainer.train_and_evaluate(_with_steps(config, steps, stage), run_dir, devices)
    with open(os.path.join(run_dir, "throughput.json")) as f:
      return json.load(f)


def measure(config, steps: int, iters: int = 10, devices=None, stage: str | None = None) -> dict:
  """The loop's and the bare step's speed for one stage (default: the method's first).

  Returns:
    `{"stage", "loop_steps", "loop_ms_per_step", "step_ms", "loop_examples_per_s",
    "step_examples_per_s", "ratio", "phases_ms_per_step"}`; `ratio` = bare step ms / loop ms per
    step.

  Example:
    >>> from configs import scunet
    >>> from benchmarks.loop import measure
    >>> row = measure(scunet.get_config("smoke"), steps=8, iters=2)  # doctest: +SKIP
  """
  bare = harness.benchmark_config(config, warmup=2, iters=iters, devices=devices, stage=stage)
  name = bare["stage"]
  stages = loop_throughput(config, steps, name, devices)
  row = stages.get(name)
  if row is None or row["steps"] < 1:
    raise ValueError(
      f"Stage {name!r} ran no step after compiling in {steps} steps (stages timed: "
      f"{ {k: v['steps'] for k, v in stages.items()} }); raise --steps."
    )
  loop_ms = 1e3 * row["seconds"] / row["steps"]
  return {
    "stage": name,
    "loop_steps": row["steps"],
    "loop_ms_per_step": loop_ms,
    "step_ms": bare["step_ms_median"],
    "loop_examples_per_s": row["examples_per_s"],
    "step_examples_per_s": bare["examples_per_s"],
    "ratio": bare["step_ms_median"] / loop_ms,
    "phases_ms_per_step": {k: 1e3 * v / row["steps"] for k, v in row["phases"].items()},
  }


HEADER = (
  "| config | stage | device | loop ms/step | bare step ms | loop examples/s | step examples/s "
  "| step / loop | data · dispatch · log · checkpoint · wait (ms/step) | load |\n"
  "|---|---|---|---|---|---|---|---|---|---|\n"
)


def markdown_row(name: str, row: dict, device: str, load: float) -> str:
  """One line of the results table (`HEADER`) for `measure`'s `row`."""
  phases = " · ".join(f"{row['phases_ms_per_step'][k]:.1f}" for k in loop_clock.PHASES)
  return (
    f"| `{name}` | {row['stage']} | {device} | {row['loop_ms_per_step']:.1f} | "
    f"{row['step_ms']:.1f} | {row['loop_examples_per_s']:.1f} | {row['step_examples_per_s']:.1f} "
    f"| {row['ratio']:.2f} | {phases} | {load:.1f} |\n"
  )


def main(argv):
  del argv
  flag = flags.FLAGS["config"]
  name = os.path.basename(config_flags.get_config_filename(flag))
  overrides = config_flags.get_override_values(flag)
  name += "".join(f" {k}={v}" for k, v in sorted(overrides.items()))
  load = os.getloadavg()[0]
  runtime = None
  if flags.FLAGS.split_cores:
    host, device_cores = (
      {int(c) for c in part.split(",")} for part in flags.FLAGS.split_cores.split(":")
    )
    runtime = core_split.split(host, device_cores)
  row = measure(flags.FLAGS.config, flags.FLAGS.steps, flags.FLAGS.iters, stage=flags.FLAGS.stage)
  device = f"{jax.devices()[0].device_kind} ×{len(jax.devices())}"
  if runtime is not None:
    device += f", split {flags.FLAGS.split_cores}"
    report = core_split.thread_report(runtime)
    print("CPU seconds by where they ran: " + ", ".join(f"{k} {v:.1f}" for k, v in report.items()))
  text = markdown_row(name, row, device, load)
  print(HEADER + text)
  if flags.FLAGS.out:
    exists = os.path.exists(flags.FLAGS.out)
    with open(flags.FLAGS.out, "a") as f:
      f.write(text if exists else HEADER + text)


if __name__ == "__main__":
  define_flags()
  app.run(main)
