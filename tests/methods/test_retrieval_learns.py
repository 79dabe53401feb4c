"""Retrieval learns (fixed seeds, one device, CI-sized): PMS and OSCARS on their phantoms.

The orderings over 3 seeds and every row are in docs/results/retrieval.md; these re-check, at
the studies' smallest size, what held there on every seed.
"""

import json
import os
import subprocess
import sys

import pytest
from one_device_run import REPO, one_device_env, train_and_results


@pytest.mark.slow
def test_pms_retrieves_far_above_chance(tmp_path):
  results = train_and_results(tmp_path, "pms.py", "tiny")
  # Exact label-set matches are rare (chance ≈ 0.05): PMS's weighted multi-class similarity
  # finds them several times more often than a random ranking, and partial matches too.
  chance = results["retrieval/chance_precision/exact"]
  assert results["retrieval/precision@10/exact"] > 2.0 * chance, results
  assert results["retrieval/precision@10/partial"] > results["retrieval/chance_precision/partial"]
  assert results["auc/macro"] > 0.6


@pytest.mark.slow
def test_oscars_pipeline_learns_and_beats_the_triplet_on_precision(tmp_path):
  workdir = tmp_path / "oscars"
  command = [
    sys.executable, "-m", "launch.oscars", "--config=configs/oscars.py:tiny,detector=autoencoder",
    f"--workdir={workdir}", "--rows=oscars,triplet", "--seeds=1",
  ]  # fmt: skip
  done = subprocess.run(command, cwd=REPO, env=one_device_env(), capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-4000:]
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)["results"]
  oscars, triplet = results["oscars"]["tiny"]["0"], results["triplet"]["tiny"]["0"]
  for run in (oscars, triplet):
    assert run["precision@10/single"] > 2.0 * run["chance_precision/single"], run
  assert oscars["precision@10/single"] > triplet["precision@10/single"]
  with open(os.path.join(workdir, "annotations", "summary.json")) as f:
    summary = json.load(f)
  # The pseudo labels carry the outliers: the top bin holds a larger share of them than the
  # bottom one.
  shares = summary["shifted_share_per_bin"]
  assert shares[-1] > shares[0], summary
