r"""Time per train step with one step per dispatch against `k` steps per dispatch.

  python -m benchmarks.dispatch --config=configs/scunet.py:smoke --k=1,4,16
  python -m benchmarks.dispatch --config=configs/semi_supervised.py:smoke --k=1,8 \
      --out=benchmarks/results/dispatch.md

For each `k`: the stage's step compiled as the trainer compiles it (`RunSetup.compile_step` for
k = 1, `RunSetup.compile_steps` — a `lax.scan` of k steps — otherwise), `--warmup` untimed
dispatches, then `--steps` steps timed end to end (`block_until_ready` on the last state), on
`k` real batches from the input pipeline re-used every dispatch (the pipeline is not timed).
Prints (and with `--out`, appends) a Markdown table: ms per step, speed-up over k = 1, compile
seconds. Small steps are launch-bound on an accelerator; on a CPU the gain is the per-call
overhead of the host loop.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core.run_setup import RunSetup


def define_flags() -> None:
  """The command-line flags (defined on demand: tests import this module next to others)."""
  config_flags.DEFINE_config_file("config", None, "Method config file.", lock_config=True)
  flags.DEFINE_list("k", ["1", "4", "16"], "Steps per dispatch to compare.")
  flags.DEFINE_integer("steps", 48, "Timed steps per k (rounded up to a multiple of k).")
  flags.DEFINE_integer("warmup", 2, "Untimed dispatches after compilation.")
  flags.DEFINE_string("out", "", "Markdown file to append the table to (optional).")
  flags.DEFINE_integer("unroll", 0, "Steps per loop iteration (0 = all, unrolled).")
  flags.mark_flags_as_required(["config"])


def time_dispatch(setup: RunSetup, k: int, steps: int, warmup: int, unroll: int = 0) -> dict:
  """`{"ms_per_step", "compile_s"}` of `k` steps per dispatch over about `steps` steps."""
  stage = setup.stages[0]
  _, shardings = setup.state_shardings(0)
  dataset = setup.train_dataset
  local = [dataset[i % len(dataset)] for i in range(k)]
  state = setup.create_state(0)
  start = time.perf_counter()
  if k == 1:
    step = setup.compile_step(stage, shardings)
    batch = mesh_lib.global_batch(local[0], setup.mesh)
    compiled = step.lower(state, batch, setup.train_rng).compile()

    def dispatch(state, i):
      return compiled(state, batch, jax.random.fold_in(setup.train_rng, i))[0]
  else:
    step = setup.compile_steps(stage, shardings, k, unroll)
    batches = mesh_lib.global_stacked_batch(mesh_lib.stack_local_batches(local), setup.mesh)
    compiled = step.lower(state, batches, setup.train_rng, np.int32(0)).compile()

    def dispatch(state, i):
      return compiled(state, batches, setup.train_rng, np.int32(i * k))[0]

  compile_s = time.perf_counter() - start
  for i in range(warmup):
    state = dispatch(state, i)
  jax.block_until_ready(state)
  calls = -(-steps // k)
  start = time.perf_counter()
  for i in range(calls):
    state = dispatch(state, warmup + i)
  jax.block_until_ready(state)
  return {"ms_per_step": 1e3 * (time.perf_counter() - start) / (calls * k), "compile_s": compile_s}


def main(argv):
  del argv
  setup = RunSetup(flags.FLAGS.config)
  flag = flags.FLAGS["config"]
  name = os.path.basename(config_flags.get_config_filename(flag))
  load = os.getloadavg()[0]
  values = flags.FLAGS
  rows = {
    int(k): time_dispatch(setup, int(k), values.steps, values.warmup, values.unroll)
    for k in values.k
  }
  base = rows[min(rows)]["ms_per_step"]
  device = f"{jax.devices()[0].device_kind} ×{len(jax.devices())}"
  lines = [
    f"`{name}` on {device} (load average {load:.1f} at the start), {values.steps} steps per k, "
    f"unroll {flags.FLAGS.unroll or 'all'}:",
    "",
    "| steps per dispatch | ms per step | speed-up | compile s |",
    "|---|---|---|---|",
  ]
  for k, row in rows.items():
    lines.append(
      f"| {k} | {row['ms_per_step']:.2f} | {base / row['ms_per_step']:.2f} | "
      f"{row['compile_s']:.1f} |"
    )
  text = "\n".join(lines) + "\n"
  print(text)
  if flags.FLAGS.out:
    with open(flags.FLAGS.out, "a") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  define_flags()
  app.run(main)
