"""The other every-seed orderings of docs/results/ltuda.md, at the learns test's `tiny` size:
CarveMix beats CutMix and the fully labelled upper bound beats LTUDA (seed 0; about four
minutes, so `@pytest.mark.study`: `MLSUP_STUDY_TESTS=1 pytest tests/methods/test_ltuda_claims.py`).
"""

import json
import os

import pytest
from one_device_run import run_launch_train


def _train(tmp_path, options: str) -> dict:
  workdir = os.path.join(tmp_path, options.replace(",", "_").replace("=", "-"))
  done = run_launch_train(f"--config=configs/ltuda.py:{options}", f"--workdir={workdir}")
  assert done.returncode == 0, done.stderr[-4000:]
  with open(os.path.join(workdir, "eval_results.json")) as f:
    return json.load(f)


@pytest.mark.study
def test_carvemix_beats_cutmix_and_full_labels_beat_ltuda(tmp_path):
  carvemix = _train(tmp_path, "tiny")
  cutmix = _train(tmp_path, "tiny,mixing=cutmix")
  full = _train(tmp_path, "tiny,method=full")
  assert carvemix["dice"] > cutmix["dice"], (carvemix["dice"], cutmix["dice"])
  assert full["dice"] > carvemix["dice"], (full["dice"], carvemix["dice"])
