"""The report every PyTorch benchmark leg returns (same fields as the JAX legs' reports)."""

from __future__ import annotations

import os
import statistics


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
