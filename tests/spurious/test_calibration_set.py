"""CFR's calibration set: anchors, positive pools, negatives, and its edge cases."""

import numpy as np
import pytest

from mlsup_jax.spurious.calibration_set import build_calibration_set


def _data():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(40, 6)).astype(np.float32)
  labels = np.repeat([0, 1], 20)
  predictions = labels.copy()
  predictions[[1, 5, 25]] = 1 - labels[[1, 5, 25]]
  return features, labels, predictions


def test_anchors_are_the_mistakes_then_correct_samples_per_class():
  features, labels, predictions = _data()
  calib = build_calibration_set(features, labels, predictions, correct_per_class=4, negatives=3)
  assert calib.num_mistakes == 3
  assert calib.anchors[:3].tolist() == [1, 5, 25]
  drawn = calib.anchors[3:]
  assert len(drawn) == 8
  assert np.all(predictions[drawn] == labels[drawn])
  assert np.bincount(labels[drawn]).tolist() == [4, 4]
  # Positive pools: every correctly classified sample of the class, nothing else.
  for c in (0, 1):
    pool = calib.positive_pool[c, : calib.positive_counts[c]]
    expected = np.flatnonzero((labels == c) & (predictions == labels))
    assert sorted(pool.tolist()) == expected.tolist()


def test_hard_negatives_are_the_nearest_of_the_other_class():
  features, labels, predictions = _data()
  calib = build_calibration_set(features, labels, predictions, correct_per_class=2, negatives=5)
  unit = features / np.linalg.norm(features, axis=1, keepdims=True)
  for anchor, row in zip(calib.anchors, calib.negatives, strict=True):
    others = np.flatnonzero(labels != labels[anchor])
    nearest = others[np.argsort(-(unit[others] @ unit[anchor]))[:5]]
    assert row.tolist() == nearest.tolist()


def test_random_same_class_mode_reproduces_the_released_loader():
  features, labels, predictions = _data()
  calib = build_calibration_set(
    features,
    labels,
    predictions,
    correct_per_class=2,
    negatives=5,
    negative_mode="random_same_class",
  )
  for anchor, row in zip(calib.anchors, calib.negatives, strict=True):
    assert np.all(labels[row] == labels[anchor])


def test_no_mistakes_falls_back_to_correct_samples_and_empty_is_an_error(caplog):
  features, labels, _ = _data()
  calib = build_calibration_set(features, labels, labels, correct_per_class=3, negatives=2)
  assert calib.num_mistakes == 0 and len(calib.anchors) == 6
  with pytest.raises(ValueError, match="calibration set is empty"):
    build_calibration_set(features, labels, labels, correct_per_class=0, negatives=2)


def test_a_class_without_correct_samples_is_an_error():
  features, labels, _ = _data()
  with pytest.raises(ValueError, match="no positives"):
    build_calibration_set(features, labels, np.zeros_like(labels), correct_per_class=1, negatives=2)


def test_bad_arguments():
  features, labels, predictions = _data()
  with pytest.raises(ValueError, match="negative_mode"):
    build_calibration_set(
      features, labels, predictions, correct_per_class=1, negatives=2, negative_mode="nearest"
    )
  with pytest.raises(ValueError, match="negatives must be"):
    build_calibration_set(features, labels, predictions, correct_per_class=1, negatives=0)
  with pytest.raises(ValueError, match="expected"):
    build_calibration_set(features, labels[:3], predictions, correct_per_class=1, negatives=2)
