"""Where the training loop's wall time goes, compilation excluded: `<workdir>/throughput.json`.

The trainer times every stage's loop by phase — `data` (next batch + host → device transfer),
`dispatch` (the jitted step call: asynchronous, so it returns before the step is done), `log`
(reading the previous dispatch's metrics, which waits for it, and writing them), `checkpoint`
(the finiteness check, which waits for the state, and orbax's save) — and `wait` (the stage end:
the last step and the last checkpoint finish). One-time costs are timed apart and left out:
a dispatch that compiles a program (the first call of each step function; timed between two
waits for the state, and left out with its steps) and the run's first checkpoint (it compiles
the finiteness check and starts orbax's threads). So `seconds / steps` is the steady-state time
per step a long run gets. The time the device computes shows up in whichever phase waits for it
(normally `log`, `checkpoint` or `wait`).

Example:
  >>> clock = LoopClock(batch_size=8)
  >>> clock.begin_stage("train")
  >>> with clock.phase("data"):
  ...   pass
  >>> clock.count_steps(1)
  >>> clock.end_stage()
  >>> sorted(clock.report()["train"])  # doctest: +NORMALIZE_WHITESPACE
  ['examples_per_s', 'excluded_steps', 'one_time_seconds', 'phases', 'seconds', 'steps',
   'steps_per_s']
"""

from __future__ import annotations

import contextlib
import json
import os
import time

PHASES = ("data", "dispatch", "log", "checkpoint", "wait")
ONE_TIME = ("compile", "first_checkpoint")


class LoopClock:
  """Per-stage wall time of the training loop by phase, with compiling dispatches apart.

  Args:
    batch_size: global examples per step (the main stream's), for `examples_per_s`.
  """

  def __init__(self, batch_size: int):
    self._batch_size = int(batch_size)
    self._stages: dict[str, dict] = {}
    self._current: dict | None = None
    self._started = 0.0
    self._excluded_before = 0.0

  def begin_stage(self, name: str) -> None:
    self._current = self._stages.setdefault(
      name,
      {
        "steps": 0,
        "seconds": 0.0,
        "phases": dict.fromkeys(PHASES, 0.0),
        "excluded_steps": 0,
        "one_time_seconds": dict.fromkeys(ONE_TIME, 0.0),
      },
    )
    self._started = time.perf_counter()
    self._excluded_before = sum(self._current["one_time_seconds"].values())

  @contextlib.contextmanager
  def phase(self, name: str):
    """Adds the block's wall time to phase `name` of the current stage."""
    start = time.perf_counter()
    try:
      yield
    finally:
      self._current["phases"][name] += time.perf_counter() - start

  @contextlib.contextmanager
  def one_time(self, kind: str, steps: int = 0):
    """A one-time cost (`ONE_TIME`): its wall time and the `steps` it ran are left out."""
    start = time.perf_counter()
    try:
      yield
    finally:
      self._current["one_time_seconds"][kind] += time.perf_counter() - start
      self._current["excluded_steps"] += int(steps)

  def count_steps(self, steps: int) -> None:
    self._current["steps"] += int(steps)

  def end_stage(self) -> None:
    stage = self._current
    elapsed = time.perf_counter() - self._started
    stage["seconds"] += elapsed - (sum(stage["one_time_seconds"].values()) - self._excluded_before)
    self._current = None

  def report(self) -> dict[str, dict]:
    """`{stage: {steps, seconds, steps_per_s, examples_per_s, phases, excluded_steps,
    one_time_seconds}}`: `steps` and `seconds` are the timed ones (one-time costs left out)."""
    out = {}
    for name, stage in self._stages.items():
      timed = stage["steps"] - stage["excluded_steps"]
      rate = timed / stage["seconds"] if timed > 0 and stage["seconds"] > 0 else float("nan")
      out[name] = {
        "steps": timed,
        "seconds": stage["seconds"],
        "steps_per_s": rate,
        "examples_per_s": rate * self._batch_size,
        "phases": dict(stage["phases"]),
        "excluded_steps": stage["excluded_steps"],
        "one_time_seconds": dict(stage["one_time_seconds"]),
      }
    return out

  def write(self, workdir: str) -> str:
    """Writes `report()` to `<workdir>/throughput.json`; returns its path."""
    path = os.path.join(workdir, "throughput.json")
    with open(path, "w") as f:
      json.dump(self.report(), f, indent=2, sort_keys=True)
    return path
