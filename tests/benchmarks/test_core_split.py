"""`core_split` pins XLA's CPU runtime threads apart from the host's (a fresh process each: the
runtime's threads must start inside `split`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks import core_split

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = """
import json, os, threading
import jax, jax.numpy as jnp
from benchmarks import core_split
runtime = core_split.split({HOST}, {DEVICE})
x = jnp.ones((512, 512))
for _ in range(60):
  x = jnp.tanh(x @ x)
x.block_until_ready()
started = []
worker = threading.Thread(target=lambda: started.append(sorted(os.sched_getaffinity(0))))
worker.start(); worker.join()
print(json.dumps({
  "runtime_masks": sorted({tuple(sorted(os.sched_getaffinity(t))) for t in runtime}),
  "main": sorted(os.sched_getaffinity(0)),
  "new_thread": started[0],
  "report": core_split.thread_report(runtime),
}))
"""


def test_runtime_threads_compute_on_the_device_core_and_new_threads_stay_on_the_host():
  cores = sorted(os.sched_getaffinity(0))
  if len(cores) < 2:
    pytest.skip("needs two cores")
  host, device = {cores[0]}, {cores[1]}
  script = SCRIPT.replace("{HOST}", repr(host)).replace("{DEVICE}", repr(device))
  done = subprocess.run(
    [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
  )
  assert done.returncode == 0, done.stderr[-2000:]
  out = json.loads(done.stdout.strip().splitlines()[-1])
  assert out["runtime_masks"] == [[cores[1]]]
  assert out["main"] == [cores[0]] and out["new_thread"] == [cores[0]]
  report = out["report"]
  assert report["other_cpu_s"] == 0.0
  # The matmuls ran on the runtime's threads, not on the host's.
  assert report["device_cpu_s"] >= 0.1  # ~16 GFLOP of matmuls: 0.15–0.4 s at 40–100 GFLOP/s


def test_overlapping_or_unavailable_cores_are_refused_before_anything_is_pinned():
  before = os.sched_getaffinity(0)
  with pytest.raises(ValueError, match="overlap"):
    core_split.split({0}, {0, 1})
  with pytest.raises(ValueError, match="not all in"):
    core_split.split({0}, {10_000})
  assert os.sched_getaffinity(0) == before
