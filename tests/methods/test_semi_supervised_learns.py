"""The semi-supervised family learns (slow): at the CI size (`small`: 1 labelled patient of 8
slices, 11 unlabelled, 400 steps, seed 0), with each run's checkpoint chosen on the validation
patients and tested once — `python -m launch.semi_supervised` in a subprocess on one device.

What is asserted is what held on **every** seed of the study (docs/results/semi_supervised.md,
seeds 0–2 at this size) on the CPUs it was run on (AMD AVX2, Intel AVX-512, AMD AVX-512; XLA's
round-off differs between CPUs and moves a seed's Dice by up to 0.01): ACTION and ACTION++ above
Mean Teacher. UA-MT above Mean Teacher held on 3 / 3 seeds on one CPU and 1 / 3 on another
(seed 0: 0.772 vs 0.774), and FixMatch above labelled-only on 3 / 3, 3 / 3 and, on the AMD
AVX-512 CPU, 2 / 3 (seed 0: 0.779 vs 0.789), so they are reported there, not asserted. The
papers' other orderings (each method above labelled-only, ACTION++ above ACTION, ARCO above MONA)
hold on fewer seeds at this size and are reported there too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from one_device_run import REPO, one_device_env

pytestmark = pytest.mark.slow


def _study(tmp_path, methods: str, labelled: int = 1) -> dict:
  """Seed 0 of the study for `methods` (comma-separated rows): `{row: test results}`."""
  command = [
    sys.executable,
    "-m",
    "launch.semi_supervised",
    f"--workdir={tmp_path}",
    "--options=small",
    f"--labelled={labelled}",
    "--seeds=1",
    f"--methods={methods}",
  ]
  run = subprocess.run(command, cwd=REPO, env=one_device_env(), capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  with open(os.path.join(tmp_path, "results.json")) as f:
    results = json.load(f)["results"]
  return {row: results[row][str(labelled)]["0"] for row in methods.split(",")}


def test_teachers_beat_mean_teacher_with_one_labelled_patient(tmp_path):
  rows = _study(tmp_path, "Mean Teacher,ACTION (fine-tuning),ACTION++")
  teacher = rows.pop("Mean Teacher")
  assert teacher["dice"] > 0.7
  for name, result in rows.items():
    assert result["dice"] > teacher["dice"], name


def test_fixmatch_and_labelled_only_learn_with_one_labelled_patient(tmp_path):
  """FixMatch above labelled-only holds on 8 of 9 seed × CPU runs, not on seed 0 of one CPU: not
  asserted (module docstring)."""
  rows = _study(tmp_path, "labelled-only,FixMatch")
  for result in (rows["labelled-only"], rows["FixMatch"]):
    assert result["dice"] > 0.7  # both segment the three structures (untrained: ≈ 0.05)
    assert result["num_images"] == 4  # per test volume
    assert 100 <= result["selected_step"] <= 400  # chosen on validation, among the kept steps


@pytest.mark.study
def test_action_pp_beats_mean_teacher_with_seven_labelled_patients(tmp_path):
  """The one every-seed ordering at 7 labelled patients (0.801 / 0.696 / 0.768 vs 0.795 / 0.687 /
  0.751); about three minutes, so `MLSUP_STUDY_TESTS=1` only (CI's budget)."""
  rows = _study(tmp_path, "Mean Teacher,ACTION++", labelled=7)
  assert rows["ACTION++"]["dice"] > rows["Mean Teacher"]["dice"]
