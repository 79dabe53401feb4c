"""Times one method's train step: the production `jax.jit` + sharding path and a `jax.pmap` leg.

Both legs build everything from the config through `RunSetup`, take ONE real batch from the
input pipeline and re-use it for every timed step (the pipeline is not timed), compile ahead of
time with `.lower(...).compile()` so compilation is timed apart from the steps, then time
`iters` steps after `warmup` steps, each ended by `jax.block_until_ready`. The state is donated,
so each step's returned state is fed to the next. The step is that of one stage of the method
(`stage=`, by name; default the first), started from the state that stage begins with, after
ONE untimed step of every earlier stage (`stage_state`).

What a report holds (`None` where unknown):
- `compile_s`: lower + compile seconds. With a persistent compilation cache on (tests), this is
  mostly a cache load; `compilation_cache` says whether one was on.
- `step_ms_min`, `step_ms_median`, `step_ms_mean` (steps that alternate, e.g. MCPM's
  `meta_every`: a stage with `variants` is timed as the trainer runs it, each variant compiled
  once and chosen per step), `examples_per_s` (global batch / median step).
- `flops_per_step` and `memory` of a stage with variants: those of the variant of step 0.
- `flops_per_step`: FLOPs of one step (global batch), from `flops_source`:
  - `"xla_cpu_compiled"` (CPU runs): XLA's `cost_analysis()` of the compiled program, which
    counts the per-device (SPMD-partitioned) program, times the device count;
  - `"cpu_lowering"` (GPU/TPU runs): `cost_analysis()` of the SAME step function lowered for
    one CPU device at the same global shapes (`cpu_lowering_flops`). XLA's GPU
    `cost_analysis()` leaves out the convolutions it hands to cuDNN (10–80× too few FLOPs for
    our conv nets), so the accelerator's own count would make MFU meaningless.
  `flops_per_step_device` keeps the compiled program's own count (× device count) either way.
  XLA counts 2 FLOPs per multiply-add and only the taps of a convolution that touch real
  (unpadded) input, checked against an analytic count in tests/benchmarks/test_flops.py.
- `tflops_per_s`: `flops_per_step / median`; `mfu`: that over the devices' summed dense peak
  (`PEAK_TFLOPS`, by `device_kind` and compute dtype; None on CPU or an unknown device).
- `memory`: `memory_analysis()` argument / output / alias / temp bytes of the per-device
  program, and `peak_bytes` = argument + output + temp − alias (donated outputs re-use their
  input buffers).
"""

from __future__ import annotations

import copy
import statistics
import time

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core.run_setup import RunSetup, enter_stage
from mlsup_jax.core.state import TrainState

PMAP_AXIS = "batch"

# Dense peak TFLOP/s per chip: (device_kind substring, {compute dtype: peak}). First match wins,
# so specific names come first. float32 is what XLA's default precision runs f32 convolutions
# and matmuls at: TF32 tensor cores on NVIDIA, one bf16 pass on TPU.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
  ("h200", {"bfloat16": 989.4, "float32": 494.7}),
  ("h100 pcie", {"bfloat16": 756.0, "float32": 378.0}),
  ("h100", {"bfloat16": 989.4, "float32": 494.7}),  # SXM.
  ("a100", {"bfloat16": 312.0, "float32": 156.0}),
  ("tpu v5 lite", {"bfloat16": 197.0, "float32": 197.0}),  # v5e.
  ("tpu v5e", {"bfloat16": 197.0, "float32": 197.0}),
  ("tpu v5p", {"bfloat16": 459.0, "float32": 459.0}),
  ("tpu v5", {"bfloat16": 459.0, "float32": 459.0}),  # v5p reports "TPU v5".
  ("tpu v4", {"bfloat16": 275.0, "float32": 275.0}),
)


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  """Dense peak TFLOP/s of one chip, or None when unknown (CPUs, other accelerators)."""
  kind = device_kind.lower()
  for name, peaks in PEAK_TFLOPS:
    if name in kind:
      return peaks.get(dtype)
  return None


def compute_dtype(config: ml_collections.ConfigDict) -> str:
  """`config.model.dtype` where the config has one, else float32."""
  if "model" in config and "dtype" in config.model:
    return str(jnp.dtype(config.model.dtype))
  return "float32"


def xla_flops(compiled) -> float | None:
  """FLOPs from `compiled.cost_analysis()` (a dict, or a list of dicts in some JAX versions)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # Some backends do not implement it.
    return None
  return _analysis_flops(analysis)


def _analysis_flops(analysis) -> float | None:
  """The positive `flops` of a cost analysis (a dict, or a list of dicts), else None."""
  if isinstance(analysis, list | tuple):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  flops = float(analysis["flops"])
  return flops if flops > 0 else None


def cpu_lowering_flops(train_step, *args) -> float | None:
  """FLOPs of `train_step(*args)` lowered for ONE CPU device at the arguments' global shapes.

  Nothing runs and nothing is compiled: `jax.jit(train_step).lower(...)` on abstract arguments
  placed on the CPU, then XLA's HLO `cost_analysis()`. On a GPU host this is the count XLA's
  GPU analysis would give if it counted cuDNN convolutions (which it leaves out), so MFU built on
  it is meaningful. None when JAX has no CPU backend (e.g. `JAX_PLATFORMS=cuda`) or the lowering
  has no cost analysis.

  Args:
    train_step: the pure step function (not jitted or sharded).
    *args: its arguments (arrays, or anything with `.shape` / `.dtype`), e.g.
      `(state, batch, rng)`.

  Example:
    >>> import jax.numpy as jnp
    >>> from benchmarks.harness import cpu_lowering_flops
    >>> cpu_lowering_flops(lambda a, b: a @ b, jnp.ones((4, 8)), jnp.ones((8, 2)))
    128.0
  """
  try:
    cpu = jax.devices("cpu")[0]
  except RuntimeError:  # No CPU backend in this process.
    return None
  sharding = jax.sharding.SingleDeviceSharding(cpu)
  specs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), args)
  try:
    analysis = jax.jit(train_step).lower(*specs).cost_analysis()
  except Exception:  # Some JAX versions / backends have no lowered cost analysis.
    return None
  return _analysis_flops(analysis)


def memory_stats(compiled) -> dict[str, int | None]:
  """Per-device bytes from `compiled.memory_analysis()`; every value None when unavailable."""
  keys = ("argument", "output", "alias", "temp")
  try:
    stats = compiled.memory_analysis()
  except Exception:
    stats = None
  if stats is None:
    return {f"{k}_bytes": None for k in (*keys, "peak")}
  out = {f"{k}_bytes": int(getattr(stats, f"{k}_size_in_bytes", 0) or 0) for k in keys}
  out["peak_bytes"] = (
    out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"] - out["alias_bytes"]
  )
  return out


def time_steps(step, state, args_for, warmup: int, iters: int):
  """Runs `warmup` + `iters` steps, feeding the state back; returns (state, step seconds)."""
  times = []
  for i in range(warmup + iters):
    start = time.perf_counter()
    state, metrics = step(state, *args_for(i))
    jax.block_until_ready((state, metrics))
    if i >= warmup:
      times.append(time.perf_counter() - start)
  return state, times


def make_report(
  *,
  leg,
  config,
  devices,
  batch_size,
  compile_s,
  warmup,
  times,
  flops_per_device,
  memory,
  note="",
  cpu_flops=None,
) -> dict:
  """The report of one leg (see the module docstring for the fields).

  `cpu_flops`: the step's FLOPs from its CPU lowering (`cpu_lowering_flops`); used instead of
  the compiled program's count when given.
  """
  kind, n = devices[0].device_kind, len(devices)
  median = statistics.median(times)
  device_flops = None if flops_per_device is None else flops_per_device * n
  if cpu_flops is not None:
    flops, source = cpu_flops, "cpu_lowering"
  else:
    flops = device_flops
    source = None if flops is None else f"xla_{devices[0].platform}_compiled"
  tflops_per_s = None if flops is None else flops / median / 1e12
  dtype = compute_dtype(config)
  peak = peak_tflops(kind, dtype)
  mfu = None if (peak is None or tflops_per_s is None) else tflops_per_s / (peak * n)
  return {
    "leg": leg,
    "device_kind": kind,
    "platform": devices[0].platform,
    "device_count": n,
    "dtype": dtype,
    "batch_size": int(batch_size),
    "compile_s": compile_s,
    "compilation_cache": bool(jax.config.jax_compilation_cache_dir),
    "warmup": warmup,
    "iters": len(times),
    "step_ms_min": 1e3 * min(times),
    "step_ms_median": 1e3 * median,
    "step_ms_mean": 1e3 * statistics.fmean(times),
    "examples_per_s": batch_size / median,
    "flops_per_step": flops,
    "flops_source": source,
    "flops_per_step_device": device_flops,
    "tflops_per_s": tflops_per_s,
    "peak_tflops_per_device": peak,
    "mfu": mfu,
    "memory": memory,
    "note": note,
  }


def with_batch_size(config: ml_collections.ConfigDict, batch_size: int):
  """A copy of `config` whose global training batch is `batch_size` (for batch sweeps).

  Extra streams (`config.data.streams.<name>.batch_size`: MCPM's meta batch, the unlabelled
  batch of semi-supervised methods, LTUDA's sub-datasets) are scaled by the same factor, so
  their ratio to the main batch is kept (rounded, at least 1).

  Example:
    >>> from configs import maxquery
    >>> from benchmarks.harness import with_batch_size
    >>> with_batch_size(maxquery.get_config("smoke"), 16).data.batch_size
    16
  """
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be ≥ 1.")
  config = copy.deepcopy(config)
  old = config.data.batch_size
  with config.unlocked():
    config.data.batch_size = int(batch_size)
    for stream in (config.data.get("streams") or {}).values():
      stream.batch_size = max(1, round(stream.batch_size * batch_size / old))
  return config


def _step_keys(rng, count: int):
  return [jax.random.fold_in(rng, i) for i in range(count)]


def stage_index(setup: RunSetup, stage: str | None) -> int:
  """The index of the stage named `stage` in `setup.stages`; None = the first."""
  if stage is None:
    return 0
  names = [s.name for s in setup.stages]
  if stage not in names:
    raise ValueError(f"Unknown stage {stage!r}; this method's stages are {names}.")
  return names.index(stage)


def stage_state(setup: RunSetup, index: int, batch):
  """The state `setup.stages[index]` starts from, after one step of every earlier stage.

  The earlier steps (untimed) make what those stages accumulate real: TEND's margin stage fixes
  its centre at Σc / count of the centre stage, which is 0 / 0 before any centre step.
  """
  state = setup.create_state(0)
  for i in range(index):
    _, shardings = setup.state_shardings(i)
    rng = jax.device_put(setup.train_rng, setup.replicated)
    state, _ = setup.compile_step(setup.stages[i], shardings)(state, batch, rng)
    _, shardings = setup.state_shardings(i + 1)
    enter = jax.jit(enter_stage, static_argnums=1, out_shardings=shardings)
    state = enter(state, setup.stages[i + 1])
  return state


def input_shapes(batch: dict) -> dict[str, list[int]]:
  """`{"image": [B, *S, C], ...}`; nested streams flattened, e.g. MCPM's `"meta/image"`."""
  leaves = jax.tree_util.tree_flatten_with_path(batch)[0]
  return {"/".join(str(k.key) for k in path): list(x.shape) for path, x in leaves}


def benchmark_config(
  config: ml_collections.ConfigDict,
  *,
  warmup: int = 3,
  iters: int = 10,
  devices=None,
  stage: str | None = None,
  flops_from: str = "auto",
) -> dict:
  """Benchmarks one stage's production step: `jax.jit`, sharded over the mesh, donating.

  Args:
    config: any method config.
    warmup: untimed steps after compilation.
    iters: timed steps (at least 1).
    devices: devices of the mesh; defaults to all.
    stage: name of the stage whose step is timed; None = the first.
    flops_from: where `flops_per_step` comes from: "cpu" (the step's CPU lowering,
      `cpu_lowering_flops`), "device" (the compiled program's own `cost_analysis()`), or "auto"
      (the default: "device" on CPU meshes, where both agree, "cpu" elsewhere).

  Returns:
    The report dict (module docstring), with `leg="jit"`, `stage` and `input_shapes`.
  """
  if iters < 1:
    raise ValueError(f"iters={iters} must be ≥ 1.")
  if flops_from not in ("auto", "cpu", "device"):
    raise ValueError(f"flops_from={flops_from!r}; expected 'auto', 'cpu' or 'device'.")
  setup = RunSetup(config, devices)
  index = stage_index(setup, stage)
  stage = setup.stages[index]
  _, shardings = setup.state_shardings(index)
  batch = mesh_lib.global_batch(setup.example_local, setup.mesh)
  state = stage_state(setup, index, batch)
  keys = [jax.device_put(k, setup.replicated) for k in _step_keys(setup.train_rng, warmup + iters)]
  start = time.perf_counter()
  if stage.variants:
    # The trainer's dispatch: each variant compiled once, chosen per step on the host.
    programs = {
      name: setup.compile_step(stage, shardings, fn).lower(state, batch, keys[0]).compile()
      for name, fn in stage.variants.items()
    }
    compiled = programs[stage.variant_of(0)]

    def step(state, batch, key, i):
      return programs[stage.variant_of(i)](state, batch, key)

    args_for = lambda i: (batch, keys[i], i)  # noqa: E731
  else:
    compiled = setup.compile_step(stage, shardings).lower(state, batch, keys[0]).compile()
    step, args_for = compiled, lambda i: (batch, keys[i])  # noqa: E731
  compile_s = time.perf_counter() - start
  platform = setup.mesh.devices.flat[0].platform
  cpu_flops = None
  if flops_from == "cpu" or (flops_from == "auto" and platform != "cpu"):
    # Before the timed steps donate `state`; the function of step 0, as `compiled`.
    fn = stage.variants[stage.variant_of(0)] if stage.variants else stage.train_step
    cpu_flops = cpu_lowering_flops(fn, state, batch, keys[0])
  state, times = time_steps(step, state, args_for, warmup, iters)
  del state
  report = make_report(
    leg="jit",
    config=config,
    devices=list(setup.mesh.devices.flat),
    batch_size=jax.tree.leaves(batch)[0].shape[0],
    compile_s=compile_s,
    warmup=warmup,
    times=times,
    flops_per_device=xla_flops(compiled),
    cpu_flops=cpu_flops,
    memory=memory_stats(compiled),
    note=f"stage {stage.name!r}; NamedSharding over mesh {dict(setup.mesh.shape)}",
  )
  report["stage"] = stage.name
  report["input_shapes"] = input_shapes(batch)
  return report


# Counts traced `apply_gradients` calls so the pmap wrapper can tell when a step bypassed it.
_APPLY_GRADIENTS_TRACED = [0]


@flax.struct.dataclass
class _PmeanGradState(TrainState):
  """A TrainState whose `apply_gradients` first averages the gradients over the pmap axis."""

  def apply_gradients(self, *, grads, optimizer, **changes):
    _APPLY_GRADIENTS_TRACED[0] += 1
    grads = jax.lax.pmean(grads, axis_name=PMAP_AXIS)
    return super().apply_gradients(grads=grads, optimizer=optimizer, **changes)


def _as_pmean_state(state: TrainState) -> _PmeanGradState:
  return _PmeanGradState(
    step=state.step,
    params=state.params,
    opt_state=state.opt_state,
    model_state=state.model_state,
    extra=state.extra,
  )


def pmap_step(train_step):
  """Wraps a method's `(state, batch, rng)` step for `jax.pmap(axis_name=PMAP_AXIS)`.

  The method's own step runs on each device's slice of the batch with
  `rng = fold_in(rng, axis_index)`; its call to `TrainState.apply_gradients` averages the
  gradients with `lax.pmean` (classic data parallelism). Float leaves of `model_state` and the
  metrics are averaged after the step so the replicas stay identical.

  Semantics differ from the jit path: BatchNorm statistics, batch-level losses (batch Dice) and
  any batch-global reduction are computed per device, not over the global batch.
  """

  def step(state, batch, rng):
    before = _APPLY_GRADIENTS_TRACED[0]
    rng = jax.random.fold_in(rng, jax.lax.axis_index(PMAP_AXIS))
    state, metrics = train_step(_as_pmean_state(state), batch, rng)
    if _APPLY_GRADIENTS_TRACED[0] == before:
      raise ValueError(
        "The pmap leg needs a step that updates parameters with TrainState.apply_gradients."
      )
    mean = lambda x: jax.lax.pmean(x, PMAP_AXIS) if jnp.issubdtype(x.dtype, jnp.floating) else x
    state = state.replace(model_state=jax.tree.map(mean, state.model_state))
    return state, jax.tree.map(mean, metrics)

  return step


def benchmark_pmap_leg(
  config: ml_collections.ConfigDict,
  *,
  warmup: int = 3,
  iters: int = 10,
  devices=None,
  stage: str | None = None,
) -> dict:
  """Benchmarks one stage's step under `jax.pmap` (comparison leg only; DESIGN §3).

  The state is replicated (stacked on a leading device axis), the global batch is reshaped to
  `[n_devices, per_device, ...]` and placed once; see `pmap_step` for the semantics.
  Single-process only (the leg is a comparison on one host). `stage` as `benchmark_config`.
  """
  if iters < 1:
    raise ValueError(f"iters={iters} must be ≥ 1.")
  setup = RunSetup(config, devices)
  devices = list(setup.mesh.devices.flat)
  n = len(devices)
  index = stage_index(setup, stage)
  stage = setup.stages[index]
  sharding = NamedSharding(Mesh(np.asarray(devices), (PMAP_AXIS,)), P(PMAP_AXIS))
  global_batch = mesh_lib.global_batch(setup.example_local, setup.mesh)
  host_state = jax.device_get(stage_state(setup, index, global_batch))
  del global_batch
  state = jax.device_put(jax.tree.map(lambda x: np.stack([x] * n), host_state), sharding)
  state = _as_pmean_state(state)
  local = setup.example_local
  batch = jax.device_put(
    jax.tree.map(lambda v: np.asarray(v).reshape((n, -1) + v.shape[1:]), local), sharding
  )
  keys = _step_keys(setup.train_rng, warmup + iters)
  pmapped = jax.pmap(
    pmap_step(stage.train_step),
    axis_name=PMAP_AXIS,
    in_axes=(0, 0, None),
    donate_argnums=(0,),
    devices=devices,
  )
  start = time.perf_counter()
  compiled = pmapped.lower(state, batch, keys[0]).compile()
  compile_s = time.perf_counter() - start
  state, times = time_steps(compiled, state, lambda i: (batch, keys[i]), warmup, iters)
  del state
  report = make_report(
    leg="pmap",
    config=config,
    devices=devices,
    batch_size=n * jax.tree.leaves(batch)[0].shape[1],
    compile_s=compile_s,
    warmup=warmup,
    times=times,
    flops_per_device=xla_flops(compiled),
    memory=memory_stats(compiled),
    note=f"stage {stage.name!r}; pmap: per-device BatchNorm statistics and batch losses; "
    "grads pmean-ed",
  )
  report["stage"] = stage.name
  return report
