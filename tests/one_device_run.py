"""Running `launch.train` in a subprocess on one CPU device (the learns tests).

The test session forces 8 fake CPU devices (tests/conftest.py), which would shard every step 8
ways on 2 cores (about twice as slow); the subprocess runs exactly as README's commands do.
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_device_env() -> dict:
  """This process's environment without the fake-device-count XLA flag."""
  env = dict(os.environ)
  flags = env.get("XLA_FLAGS", "").split()
  env["XLA_FLAGS"] = " ".join(f for f in flags if "device_count" not in f)
  return env


def run_launch_train(*args: str) -> subprocess.CompletedProcess:
  """`python -m launch.train <args>` from the repository root on one device."""
  command = [sys.executable, "-m", "launch.train", *args]
  return subprocess.run(command, cwd=REPO, env=one_device_env(), capture_output=True, text=True)


def train_and_results(tmp_path, config_file: str, options: str) -> dict:
  """`launch.train --config=configs/<config_file>:<options>` in its own folder under `tmp_path`
  (asserting it succeeds) → its `eval_results.json`."""
  workdir = os.path.join(tmp_path, options.replace(",", "_").replace("=", "-"))
  done = run_launch_train(f"--config=configs/{config_file}:{options}", f"--workdir={workdir}")
  assert done.returncode == 0, done.stderr[-4000:]
  with open(os.path.join(workdir, "eval_results.json")) as f:
    return json.load(f)
