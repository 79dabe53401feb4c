"""The timing loop and the report every PyTorch benchmark leg shares (same fields as the JAX
legs' reports).

Every leg is eager by default. Inside `with compiled():` the same legs run their whole step
function (forward, loss, backward, clipping, optimizer step) under `torch.compile`: that is the
`torch_compile` leg of `benchmarks/device_suite.py`, with no change to the legs themselves.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable

# The `torch.compile` mode of the legs run inside `compiled(...)` (None: eager), and the seconds
# of the last compiled leg's first call (compilation + one step).
_COMPILE: dict = {"mode": None, "first_step_s": None}


@contextlib.contextmanager
def compiled(mode: str = "default"):
  """Runs the torch legs called inside with their step function under `torch.compile(mode=...)`.

  Example:
    >>> from benchmarks import torch_report
    >>> with torch_report.compiled("default"):  # doctest: +SKIP
    ...   report = torch_kmax.benchmark_torch_kmax(config, 8, warmup=3, iters=10)
  """
  previous = dict(_COMPILE)
  _COMPILE.update(mode=mode, first_step_s=None)
  try:
    yield
  finally:
    _COMPILE.update(previous)


def timed_steps(torch, dev, step: Callable[[], object], *, warmup: int, iters: int) -> list[float]:
  """Seconds per call of `step()` for the `iters` calls after `warmup` untimed ones.

  On CUDA each call is followed by a device synchronisation (the analogue of JAX's
  `block_until_ready`) and the peak-memory counter is reset first, so `torch_report` reads the
  peak of the timed loop.
  """
  cuda = dev.type == "cuda"
  if cuda:
    torch.cuda.reset_peak_memory_stats(dev)
  if _COMPILE["mode"] is not None:
    # A fresh Dynamo cache per leg: another leg's graphs would count towards the recompile limit.
    torch._dynamo.reset()
    step = torch.compile(step, mode=_COMPILE["mode"])
    if warmup < 2:
      # Call 1 compiles; call 2 may recompile (optimizer state appears after the first step).
      raise ValueError(f"torch.compile legs need warmup ≥ 2, got {warmup}.")
  times = []
  for i in range(warmup + iters):
    start = time.perf_counter()
    step()
    if cuda:
      torch.cuda.synchronize(dev)
    if i == 0:
      _COMPILE["first_step_s"] = time.perf_counter() - start
    if i >= warmup:
      times.append(time.perf_counter() - start)
  return times


def torch_report(
  torch, dev, *, times, batch: int, warmup: int, iters: int, dtype: str, layout: str, parameters
) -> dict:
  """A torch leg's report from its timed step durations.

  Args:
    torch: the imported `torch` module (imported lazily by the callers).
    dev: the `torch.device` the steps ran on.
    times: `[iters]` seconds per timed step.
    batch: examples per step.
    warmup, iters: untimed and timed step counts.
    dtype: compute dtype name.
    layout: tensor layout, e.g. "NCHW".
    parameters: parameter count of the network the step trains.
  """
  cuda = dev.type == "cuda"
  median = statistics.median(times)
  mode = _COMPILE["mode"]
  how = "eager" if mode is None else f"torch.compile(mode={mode!r}) of the whole step,"
  return {
    "leg": "torch" if mode is None else "torch_compile",
    "device_kind": torch.cuda.get_device_name(dev) if cuda else "cpu",
    "platform": dev.type,
    "device_count": 1,
    "dtype": dtype,
    "batch_size": batch,
    # torch.compile: the first call's seconds (compilation and one step); eager: none.
    "compile_s": None if mode is None else _COMPILE["first_step_s"],
    "warmup": warmup,
    "iters": iters,
    "step_ms_min": 1e3 * min(times),
    "step_ms_median": 1e3 * median,
    "step_ms_mean": 1e3 * statistics.fmean(times),
    "examples_per_s": batch / median,
    "flops_per_step": None,
    "tflops_per_s": None,
    "mfu": None,
    "memory": {"peak_bytes": int(torch.cuda.max_memory_allocated(dev)) if cuda else None},
    "note": (
      f"{how} PyTorch {torch.__version__}, {layout}, {torch.get_num_threads()} CPU threads, "
      f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}"
    ),
    "parameters": parameters,
  }
