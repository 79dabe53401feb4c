"""Tests of the ACC-on-unseen-transformations evaluation (Tables 4.5–4.6) and its study table."""

import numpy as np
import pytest
from absl import flags

from configs import tend
from mlsup_jax.data import pipeline
from mlsup_jax.pipelines import anomaly_study, unseen_transforms

flags.FLAGS.mark_as_parsed()


def test_flagged_fraction_counts_id_images_at_or_above_the_threshold():
  scores = np.array([0.1, 0.5, 0.7, 0.9, 0.2])
  ood = np.array([0, 0, 0, 1, 0])
  # ID scores 0.1, 0.5, 0.7, 0.2; at t = 0.5: 0.5 and 0.7 are flagged.
  assert unseen_transforms.flagged_fraction(scores, ood, 0.5) == pytest.approx(0.5)
  assert unseen_transforms.flagged_fraction(scores, ood, 1.0) == 0.0
  with pytest.raises(ValueError, match="No ID images"):
    unseen_transforms.flagged_fraction(scores, np.ones(5), 0.5)


def test_unseen_config_transforms_every_evaluation_image_reproducibly():
  config = tend.get_config("smoke")
  with pytest.raises(KeyError, match="random_cut"):
    unseen_transforms.unseen_config(config, "jpeg")
  blurred = unseen_transforms.unseen_config(config, "gaussian_blur")
  assert config.data.eval_transforms == ()  # the original is left alone
  original = next(pipeline.eval_batches(config.data, 8))
  first = next(pipeline.eval_batches(blurred.data, 8))
  second = next(pipeline.eval_batches(blurred.data, 8))
  np.testing.assert_array_equal(first["image"], second["image"])  # seeded per image
  assert first["image"].shape == original["image"].shape
  # Blur removes high frequencies: the mean absolute vertical gradient drops for every image.
  grad = lambda x: np.abs(np.diff(x, axis=1)).mean(axis=(1, 2, 3))
  assert np.all(grad(first["image"]) < grad(original["image"]))


@pytest.mark.slow
def test_study_reports_acc_on_unseen_transformations(tmp_path):
  configs = {"tend": tend.get_config("smoke")}
  study = anomaly_study.run_study(
    configs, str(tmp_path), inter_class=(), unseen=("gaussian_blur", "additive_noise")
  )
  acc = study["tables"]["unseen_acc"]
  assert set(acc) == {row for row, run, _ in anomaly_study.ROWS if run == "tend"}
  for row in acc.values():
    assert set(row) == {"gaussian_blur", "additive_noise"}
    assert all(0.0 <= v <= 1.0 for v in row.values())
  assert "### ACC on unseen transformations" in study["markdown"]
  assert (tmp_path / "tend" / "unseen_gaussian_blur" / "tend_scores.npz").exists()
  # The test pass carries each image's class, so the findings are scored one by one.
  per_class = study["tables"]["per_class_auroc"]
  assert set(per_class) == set(acc)
  for row in per_class.values():
    assert row and set(row) <= {"opacity", "nodule", "effusion", "cardiomegaly"}
    assert all(0.0 <= v <= 1.0 for v in row.values())
