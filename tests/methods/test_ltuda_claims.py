"""The other every-seed orderings of docs/results/ltuda.md, at the learns test's `tiny` size:
CarveMix beats CutMix and the fully labelled upper bound beats LTUDA (seed 0; about four
minutes, so a `study` test: `MLSUP_STUDY_TESTS=1 pytest tests/methods/test_ltuda_claims.py`).
"""

import pytest
from one_device_run import train_and_results


def _train(tmp_path, options: str) -> dict:
  return train_and_results(tmp_path, "ltuda.py", options)


@pytest.mark.study
def test_carvemix_beats_cutmix_and_full_labels_beat_ltuda(tmp_path):
  carvemix = _train(tmp_path, "tiny")
  cutmix = _train(tmp_path, "tiny,mixing=cutmix")
  full = _train(tmp_path, "tiny,method=full")
  assert carvemix["dice"] > cutmix["dice"], (carvemix["dice"], cutmix["dice"])
  assert full["dice"] > carvemix["dice"], (full["dice"], carvemix["dice"])
