"""The timing loop and the report every PyTorch benchmark leg shares (same fields as the JAX
legs' reports)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable


def timed_steps(torch, dev, step: Callable[[], object], *, warmup: int, iters: int) -> list[float]:
  """Seconds per call of `step()` for the `iters` calls after `warmup` untimed ones.

  On CUDA each call is followed by a device synchronisation (the analogue of JAX's
  `block_until_ready`) and the peak-memory counter is reset first, so `torch_report` reads the
  peak of the timed loop.
  """
  cuda = dev.type == "cuda"
  if cuda:
    torch.cuda.reset_peak_memory_stats(dev)
  times = []
  for i in range(warmup + iters):
    start = time.perf_counter()
    step()
    if cuda:
      torch.cuda.synchronize(dev)
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
  return {
    "leg": "torch",
    "device_kind": torch.cuda.get_device_name(dev) if cuda else "cpu",
    "platform": dev.type,
    "device_count": 1,
    "dtype": dtype,
    "batch_size": batch,
    "compile_s": None,
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
      f"eager PyTorch {torch.__version__}, {layout}, {torch.get_num_threads()} CPU threads, "
      f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}"
    ),
    "parameters": parameters,
  }
