"""MaxQuery learns: with fixed seeds it segments the inlier classes and localizes unseen tumours.

One training run of the main job's MaxQuery configuration and one evaluation on the held-out
test split, whose OOD tumour subtypes never appear in training. Thresholds sit
clearly above chance / the untrained network and below the values measured here (see the
numbers in each assertion), so the test fails if the method stops learning, not on noise.

The run is `launch.train` in a subprocess on one CPU device, exactly as the main job runs it:
the test session's 8 fake devices would shard every step 8 ways on 2 cores (about twice as
slow), and the subprocess reproduces README's MaxQuery row.
"""

import json

import pytest
from one_device_run import run_launch_train

pytestmark = pytest.mark.slow


def test_maxquery_segments_inliers_and_localizes_ood(tmp_path):
  run = run_launch_train(
    "--config=configs/maxquery.py:variant=maxquery",
    f"--workdir={tmp_path}",
    "--config.train.checkpoint_every=1000",
    "--config.eval.save_figures=False",
  )
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.loads((tmp_path / "eval_results.json").read_text())
  print({k: round(v, 3) for k, v in results.items()})
  # Inlier segmentation (an untrained network scores ≈ 0): measured LIVER / TUMOUR below.
  assert results["dice/liver"] > DICE_LIVER_MIN
  assert results["dice/tumour_avg"] > DICE_TUMOUR_MIN
  # OOD localization among tumour pixels (chance: AUROC 0.5).
  assert results["maxquery/auroc"] > AUROC_MIN
  assert results["maxquery/case_auc"] > CASE_AUC_MIN


# Thresholds below the values this exact run measures (README's MaxQuery rows: liver Dice 0.94,
# tumour avg 0.60, pixel AUROC 0.626, case AUC 0.62).
DICE_LIVER_MIN = 0.85
DICE_TUMOUR_MIN = 0.5
AUROC_MIN = 0.58
CASE_AUC_MIN = 0.55
