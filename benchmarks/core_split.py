"""One CPU core as the "device", another as its host: XLA's runtime threads pinned apart (Linux).

On a CPU, XLA computes on the same cores that run the host's work (the input pipeline, the
prefetch thread, orbax, Python), so a loop benchmark there measures how the two share a core, not
whether the host keeps a device busy. `split()` emulates an accelerator host on a multi-core CPU:
the calling thread (and every thread it starts later: grain's, the prefetcher's, orbax's) and
the threads already running are pinned to `host_cores`; then XLA's CPU runtime is started and
the threads it started (its compute pool and its dispatch threads) are pinned to
`device_cores`. The bare step and the loop then both compute on the device cores only.
`thread_report()` says afterwards where the CPU time went, so a thread the split missed shows up.

Example:
  >>> from benchmarks import core_split
  >>> runtime = core_split.split(host_cores={0}, device_cores={1})  # doctest: +SKIP
  >>> core_split.thread_report(runtime)  # doctest: +SKIP
  {'device_cpu_s': ..., 'host_cpu_s': ..., 'other_cpu_s': ..., 'exited_cpu_s': ...}
"""

from __future__ import annotations

import os
import resource

import jax
import numpy as np

_TASKS = "/proc/self/task"


def _thread_ids() -> set[int]:
  return {int(t) for t in os.listdir(_TASKS)}


def _cpu_seconds(tid: int) -> float:
  """User + system CPU time of thread `tid` (0 if it has exited)."""
  try:
    with open(f"{_TASKS}/{tid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
  except FileNotFoundError:
    return 0.0
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def split(host_cores: set[int], device_cores: set[int]) -> set[int]:
  """Pins the calling thread to `host_cores` and XLA's CPU runtime threads to `device_cores`.

  Call before anything has run on the CPU backend (the runtime's threads must start here).

  Args:
    host_cores: cores for this thread and the threads it starts afterwards.
    device_cores: cores for the threads XLA's CPU runtime starts (disjoint from `host_cores`).

  Returns:
    The ids of the threads pinned to `device_cores`.
  """
  if host_cores & device_cores:
    raise ValueError(f"host cores {host_cores} and device cores {device_cores} overlap.")
  available = os.sched_getaffinity(0)
  if not (host_cores | device_cores) <= available:
    raise ValueError(f"cores {host_cores | device_cores} not all in this process's {available}.")
  before = _thread_ids()
  for tid in before:  # the calling thread (new threads inherit its mask) and those started so far
    _pin(tid, host_cores)
  jax.jit(lambda x: x + 1)(np.ones(4, np.float32)).block_until_ready()  # starts the runtime
  runtime = _thread_ids() - before
  if not runtime:
    raise RuntimeError("XLA's CPU runtime started no thread here: was it already running?")
  for tid in runtime:
    _pin(tid, device_cores)
  return runtime


def _pin(tid: int, cores: set[int]) -> None:
  try:
    os.sched_setaffinity(tid, cores)
  except ProcessLookupError:  # the thread has exited
    pass


def thread_report(runtime: set[int]) -> dict[str, float]:
  """The process's CPU seconds so far by where they ran.

  `device_cpu_s`: the `runtime` threads and live threads confined to their cores; `host_cpu_s`:
  live threads off the device cores; `other_cpu_s`: live threads allowed on both (none expected);
  `exited_cpu_s`: threads that have ended (e.g. a finished run's pipeline threads; they were
  started on the host cores).
  """
  device = set().union(*(_mask(t) for t in runtime))
  out = {"device_cpu_s": 0.0, "host_cpu_s": 0.0, "other_cpu_s": 0.0}
  for tid in _thread_ids():
    cores = _mask(tid)
    if tid in runtime or (cores and cores <= device):
      kind = "device"
    elif cores & device:
      kind = "other"
    else:
      kind = "host"
    out[f"{kind}_cpu_s"] += _cpu_seconds(tid)
  usage = resource.getrusage(resource.RUSAGE_SELF)
  out["exited_cpu_s"] = max(0.0, usage.ru_utime + usage.ru_stime - sum(out.values()))
  return out


def _mask(tid: int) -> set[int]:
  """Thread `tid`'s cores (empty once it has exited)."""
  try:
    return os.sched_getaffinity(tid)
  except OSError:
    return set()
