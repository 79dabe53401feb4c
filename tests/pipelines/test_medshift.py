"""MedShift end to end on tiny phantoms: shifts ranked first, OTDD falls, re-runs resume."""

import json
import os

import numpy as np
import pytest

from configs import medshift as medshift_config
from mlsup_jax.core import trainer
from mlsup_jax.pipelines import medshift, medshift_report

# Two well-populated classes keep the run small: normal and effusion.
CLASS_WEIGHTS = (0.5, 0.0, 0.0, 0.5, 0.0)


def tiny_config():
  config = medshift_config.get_config("smoke,detector=autoencoder,k=3")
  with config.unlocked():
    for section, cases in (
      (config.internal, 160),
      (config.internal_test, 64),
      (config.external, 200),
    ):
      section.class_weights = CLASS_WEIGHTS
      section.num_cases = cases
    config.otdd.rounds = 1
    config.classifier.train.num_steps = 40
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("medshift"))
  config = tiny_config()
  return config, workdir, medshift.run_medshift(config, workdir)


@pytest.mark.slow
def test_report_files_and_levels(run):
  _, workdir, result = run
  for name in ("matrix.json", "matrix.md", "medshift.png", "scores.npz", "groups.npz"):
    assert os.path.exists(os.path.join(workdir, name)), name
  rows = result["rows"]
  assert [row["level"] for row in rows] == ["TOP3", "TOP2", "TOP1"]
  assert rows[0]["removed"] == 0 and rows[0]["kept"] == 200
  kept = [row["kept"] for row in rows]
  assert kept == sorted(kept, reverse=True) and kept[-1] < kept[0]
  with open(os.path.join(workdir, "matrix.json")) as f:
    saved = json.load(f)
  assert saved["rows"] == json.loads(json.dumps(rows))
  print(result["markdown"])


@pytest.mark.slow
def test_detectors_rank_injected_shifts_first(run):
  _, _, result = run
  detection = result["detection"]
  print(detection)
  per_type = detection["per_shift_type"]
  assert per_type["foreign"] >= 0.8
  assert per_type["noise"] >= 0.8
  assert per_type["artefact"] >= 0.7
  assert detection["auroc_within_class_rank"] > 0.55


@pytest.mark.slow
def test_otdd_falls_as_shifted_groups_are_removed(run):
  _, _, result = run
  distances = [row["otdd_distance_mean"] for row in result["rows"]]
  print(distances)
  assert distances[-1] < distances[0]


@pytest.mark.slow
def test_rerun_reuses_every_trained_model(run, monkeypatch):
  config, workdir, result = run

  def no_training(*args, **kwargs):
    raise AssertionError("a finished MedShift run must not train again")

  monkeypatch.setattr(trainer, "train_and_evaluate", no_training)
  again = medshift.run_medshift(config, workdir)
  assert again["rows"] == result["rows"]
  np.testing.assert_array_equal(again["scores"], result["scores"])


@pytest.mark.slow
def test_default_cvad_detector_runs_end_to_end(tmp_path):
  """The default detector (CVAD, score s1 + p) on two classes: reports written, foreign first."""
  config = medshift_config.get_config("smoke,k=3")
  assert config.detector_score == "cvad_sum"
  with config.unlocked():
    for section, cases in (
      (config.internal, 160),
      (config.internal_test, 64),
      (config.external, 200),
    ):
      section.class_weights = CLASS_WEIGHTS
      section.num_cases = cases
    config.otdd.rounds = 1
    config.classifier.train.num_steps = 20
    config.detector.train.cvae_steps = 80
    config.detector.train.discriminator_steps = 30
  result = medshift.run_medshift(config, str(tmp_path))
  print(result["markdown"])
  assert os.path.exists(tmp_path / "matrix.json") and os.path.exists(tmp_path / "medshift.png")
  assert [row["level"] for row in result["rows"]] == ["TOP3", "TOP2", "TOP1"]
  assert np.all(np.isfinite(result["scores"]))
  # Foreign-modality images are the easy shift: even a briefly trained CVAD ranks them first.
  assert result["detection"]["per_shift_type"]["foreign"] >= 0.8


def _seed_result(otdd, internal, retrained, auroc):
  levels = ("TOP3", "TOP2", "TOP1")
  rows = [
    {
      "level": level,
      "kept": 30 - 10 * i,
      "removed": 10 * i,
      "removed_shifted": 5 * i,
      "kept_shifted_fraction": 0.2,
      "retrained_accuracy": retrained[i],
      "retrained_macro_f1": 0.5,
      "internal_accuracy": internal[i],
      "otdd_distance_mean": otdd[i],
      "otdd_distance_std": 0.0,
    }
    for i, level in enumerate(levels)
  ]
  detection = {"auroc_within_class_rank": auroc, "per_shift_type": {"foreign": 1.0}}
  return {"rows": rows, "detection": detection}


def test_seeds_aggregate_into_mean_std_and_claims_per_seed():
  per_seed = [
    _seed_result((2.0, 1.5, 1.8), (0.3, 0.4, 0.5), (0.5, 0.4, 0.3), 0.9),  # claims 1–3 hold
    _seed_result((2.0, 2.1, 1.9), (0.5, 0.4, 0.3), (0.4, 0.45, 0.3), 0.8),  # only claim 4 holds
  ]
  summary = medshift_report.aggregate_seeds(per_seed)
  assert summary["rows"]["TOP2"]["otdd_distance_mean"] == [1.5, 2.1]
  assert summary["detection"] == {"all": [0.9, 0.8], "foreign": [1.0, 1.0]}
  assert list(summary["holds"].values()) == [1, 1, 1, 1]
  markdown = medshift_report.render_seeds_markdown(summary, [0, 1])
  assert "| TOP2 | 20 ± 0 (20 / 20) |" in markdown
  assert "1.800 ± 0.300 (1.500 / 2.100)" in markdown
  assert "- all: 0.850 ± 0.050 (0.900 / 0.800)" in markdown
