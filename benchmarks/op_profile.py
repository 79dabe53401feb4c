r"""Where a config's compiled train step spends its time, by XLA operation kind (CPU profile).

  taskset -c 1 python -m benchmarks.op_profile --config=configs/maxquery.py
  taskset -c 1 python -m benchmarks.op_profile --config=configs/tend.py --stage=margin --top=15

Compiles the stage's production step (as `harness.benchmark_config`), runs `--warmup` steps,
then `--steps` under `jax.profiler.trace`, and sums the duration of every XLA operation event
(the CPU runtime's per-thunk trace events) by kind: convolutions, the input gradients of strided
convolutions (`convolution-base-dilated`: XLA dilates the output gradient with zeros, so a
stride-2 2-D convolution's input gradient does 4× the useful work), dots, YNNPACK fusions,
copies / transposes, reductions and the other (elementwise) fusions. Prints ms per step and
share per kind, and the `--top` single operations.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import tempfile

import jax
from absl import app, flags
from ml_collections import config_flags

from benchmarks import harness
from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core.run_setup import RunSetup

# Runtime bookkeeping events, not operations.
_NOT_OPS = (
  "ThunkExecutor",
  "PjitFunction",
  "CommonPjRt",
  "ParseArguments",
  "Handle",
  "Wait",
  "Allocate",
  "shard_args",
  "DevicePut",
  "H2D",
  "PythonRef",
  "end:",
  "$",
)
KINDS = (
  ("strided-conv input gradient", r"convolution-base-dilated"),
  ("convolution", r"^(convolution|conv_general)"),
  ("dot", r"^dot"),
  ("YNNPACK fusion", r"^ynn_fusion"),
  ("copy / transpose", r"(copy|transpose)"),
  ("reduction", r"reduce"),
)


def kind_of(op_name: str) -> str:
  """The `KINDS` label of an XLA operation name ("elementwise / other" if none matches).

  Example:
    >>> kind_of("convolution-base-dilated.5"), kind_of("multiply_tanh_fusion.18")
    ('strided-conv input gradient', 'elementwise / other')
  """
  for label, pattern in KINDS:
    if re.search(pattern, op_name):
      return label
  return "elementwise / other"


def op_times(trace_dir: str) -> dict[str, tuple[float, int]]:
  """`{operation name: (total µs, count)}` from the Perfetto trace under `trace_dir`."""
  files = glob.glob(os.path.join(trace_dir, "**", "*perfetto_trace.json.gz"), recursive=True)
  if not files:
    raise FileNotFoundError(f"No Perfetto trace under {trace_dir}.")
  with gzip.open(files[0]) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  totals: dict[str, list] = collections.defaultdict(lambda: [0.0, 0])
  for event in events:
    name = event.get("name", "")
    if event.get("ph") == "X" and not name.startswith(_NOT_OPS):
      totals[name][0] += float(event.get("dur", 0))
      totals[name][1] += 1
  return {k: (v[0], v[1]) for k, v in totals.items()}


def profile_step(config, stage: str | None = None, warmup: int = 2, steps: int = 3) -> dict:
  """Profiles `steps` calls of the stage's compiled step.

  Returns:
    `{"by_kind": {kind: ms per step}, "ops": {name: ms per step}}`.

  Example:
    >>> from configs import scunet
    >>> profile = profile_step(scunet.get_config("smoke"), steps=1)  # doctest: +SKIP
  """
  setup = RunSetup(config)
  index = harness.stage_index(setup, stage)
  _, shardings = setup.state_shardings(index)
  batch = mesh_lib.global_batch(setup.example_local, setup.mesh)
  state = harness.stage_state(setup, index, batch)
  key = jax.device_put(setup.train_rng, setup.replicated)
  train_step = setup.stages[index]
  fn = train_step.variants[train_step.variant_of(0)] if train_step.variants else None
  step = setup.compile_step(train_step, shardings, fn).lower(state, batch, key).compile()
  for _ in range(warmup):
    state, _ = step(state, batch, key)
  jax.block_until_ready(state)
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(steps):
        state, _ = step(state, batch, key)
      jax.block_until_ready(state)
    ops = {k: v[0] / 1e3 / steps for k, v in op_times(trace_dir).items()}
  by_kind: dict[str, float] = collections.Counter()
  for name, ms in ops.items():
    by_kind[kind_of(name)] += ms
  return {"by_kind": dict(by_kind), "ops": ops}


def main(argv):
  del argv
  f = flags.FLAGS
  profile = profile_step(f.config, f.stage, f.warmup, f.steps)
  total = sum(profile["by_kind"].values())
  print(f"XLA operations: {total:.1f} ms per step")
  for kind, ms in sorted(profile["by_kind"].items(), key=lambda kv: -kv[1]):
    print(f"  {kind:30s} {ms:8.1f} ms  {100 * ms / total:5.1f} %")
  print(f"The {f.top} longest operations (ms per step):")
  for name, ms in sorted(profile["ops"].items(), key=lambda kv: -kv[1])[: f.top]:
    print(f"  {ms:8.2f}  {name}")


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "Method config file.", lock_config=True)
  flags.DEFINE_string("stage", None, "Stage to profile (default: the method's first).")
  flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
  flags.DEFINE_integer("steps", 3, "Profiled steps.")
  flags.DEFINE_integer("top", 10, "Single operations to list.")
  flags.mark_flags_as_required(["config"])
  app.run(main)
