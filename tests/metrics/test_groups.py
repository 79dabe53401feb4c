"""Group-robustness metrics against hand-computed cases."""

import numpy as np
import pytest

from mlsup_jax.metrics.groups import group_accuracies, group_report


def test_group_accuracies_by_hand():
  predictions = np.array([0, 0, 1, 1, 1, 0, 1, 1])
  labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
  groups = np.array([0, 0, 1, 1, 2, 2, 3, 3])
  np.testing.assert_allclose(group_accuracies(predictions, labels, groups, 4), [1.0, 0.5, 0.5, 1.0])


def test_report_weights_groups_by_training_counts():
  predictions = np.array([0, 0, 1, 1, 1, 0, 1, 1])
  labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
  groups = np.array([0, 0, 1, 1, 2, 2, 3, 3])
  report = group_report(predictions, labels, groups, [70, 10, 10, 10], ["a", "b", "c", "d"])
  assert report["worst_group_accuracy"] == 0.5
  assert report["worst_group"] == 1.0
  # (0.7·1 + 0.1·0.5 + 0.1·0.5 + 0.1·1) = 0.9
  assert report["adjusted_average_accuracy"] == pytest.approx(0.9)
  assert report["average_accuracy"] == pytest.approx(6 / 8)
  assert report["accuracy/b"] == 0.5


def test_empty_group_is_an_error():
  with pytest.raises(ValueError, match=r"group\(s\) \[2\] have no examples"):
    group_accuracies(np.zeros(3), np.zeros(3), np.array([0, 1, 3]), 4)


def test_bad_shapes_and_ids():
  with pytest.raises(ValueError, match="equal"):
    group_accuracies(np.zeros(3), np.zeros(2), np.zeros(3, int), 1)
  with pytest.raises(ValueError, match="group ids"):
    group_accuracies(np.zeros(2), np.zeros(2), np.array([0, 5]), 4)
  with pytest.raises(ValueError, match="train_group_counts"):
    group_report(np.zeros(2), np.zeros(2), np.array([0, 0]), [0, 0])
