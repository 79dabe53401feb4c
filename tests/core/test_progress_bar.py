"""The console progress bar: no rate from updates written in one burst, then a real one."""

from __future__ import annotations

import io

from mlsup_jax.core import writers


def test_rate_waits_for_a_second_of_updates(monkeypatch):
  clock = iter([100.0, 100.00001, 100.00002, 102.0])
  monkeypatch.setattr(writers.time, "perf_counter", lambda: next(clock))
  stream = io.StringIO()
  bar = writers.ProgressBar(total_steps=40, stream=stream)
  for step in (2, 4, 6, 10):  # three in one burst (a checkpoint's flush), one 2 s later
    bar.update(step, {"loss": 0.5}, stage="train")
  lines = stream.getvalue().splitlines()
  assert all("? step/s" in line for line in lines[:3])
  assert "4.00 step/s" in lines[3] and "ETA 00:07" in lines[3] and "10/40" in lines[3]
