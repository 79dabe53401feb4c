"""Multi-host proof on one machine: 2 processes × 4 CPU devices (`jax.distributed` over gloo,
coordinator on 127.0.0.1) train exactly as 1 process × 8 devices, and the 2-process checkpoint
restores in a 1-process run.

The method has carried state (an EMA teacher in `state.extra`) and two streams (a labelled batch
of 8 and an unlabelled one of 16 with a strong view), so per-process input slicing, the
global-batch assembly and the carried state are all exercised (`two_stream_launch.py`).
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "tests", "core", "two_stream_launch.py")
# Global batches divisible by 8 devices; 16 steps, checkpoints every 8.
OVERRIDES = (
  "--config=tests/core/two_stream_config.py",
  "--config.data.batch_size=8",
  "--config.data.streams.unlabelled.batch_size=16",
  "--config.train.num_steps=16",
)


def _env(devices: int, **extra) -> dict:
  env = dict(os.environ)
  flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
  env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
  env.update(PYTHONUNBUFFERED="1", PYTHONPATH=REPO, JAX_PLATFORMS="cpu", **extra)
  return env


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _losses(workdir) -> dict[int, dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: {k: v for k, v in r.items() if k.startswith("train/")} for r in rows
          if "train/loss" in r}  # fmt: skip


def _state(workdir, step, like=None):
  """The checkpointed state as arrays on this process's first device; `like`: a state of the same
  structure (needed when the checkpoint was written by other devices, e.g. another process)."""
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  with ocp.StandardCheckpointer() as checkpointer:
    if like is None:
      return checkpointer.restore(path)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), like)
    return checkpointer.restore(path, target)


@pytest.mark.slow
def test_two_processes_of_four_devices_equal_one_process_of_eight(tmp_path):
  single, multi = tmp_path / "single", tmp_path / "multi"
  done = subprocess.run(
    [sys.executable, SCRIPT, *OVERRIDES, f"--workdir={single}"],
    cwd=REPO, env=_env(8), capture_output=True, text=True, timeout=900,
  )  # fmt: skip
  assert done.returncode == 0, done.stderr[-3000:]

  port = _free_port()
  processes = [
    subprocess.Popen(
      [sys.executable, SCRIPT, *OVERRIDES, f"--workdir={multi}"],
      cwd=REPO,
      env=_env(
        4, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)
      ),  # fmt: skip
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  errors = [p.communicate(timeout=900)[1] for p in processes]
  for p, err in zip(processes, errors, strict=True):
    assert p.returncode == 0, err[-3000:]

  # Same logged losses step for step, same parameters and teacher at the end.
  reference, distributed = _losses(single), _losses(multi)
  assert sorted(reference) == sorted(distributed) and reference
  for step in reference:
    for key, value in reference[step].items():
      np.testing.assert_allclose(distributed[step][key], value, rtol=1e-5, err_msg=f"{key}@{step}")
  a = _state(single, 16)
  b = _state(multi, 16, like=a)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)
  assert (
    json.loads((single / "eval_results.json").read_text()).keys()
    == json.loads((multi / "eval_results.json").read_text()).keys()
  )

  # The 2-process checkpoint restores in a 1-process run, which carries on to step 24.
  resumed = subprocess.run(
    [sys.executable, SCRIPT, *OVERRIDES[:-1], "--config.train.num_steps=24",
     f"--workdir={multi}"],
    cwd=REPO, env=_env(8), capture_output=True, text=True, timeout=900,
  )  # fmt: skip
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resumed from step 16" in resumed.stderr
  assert (multi / "checkpoints" / "24").exists()
