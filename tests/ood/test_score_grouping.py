"""Grouping of 1-D anomaly scores (MedShift): k-means vs sklearn, quantile bins, elbow rule."""

import numpy as np
import pytest
from sklearn.cluster import KMeans

from mlsup_jax.ood import score_grouping as sg


def _three_clusters():
  rng = np.random.default_rng(0)
  return np.concatenate([rng.normal(0, 1, 200), rng.normal(8, 1, 100), rng.normal(20, 1, 40)])


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kmeans_matches_sklearn_inertia(k):
  scores = _three_clusters()
  assignment, centres = sg.kmeans_1d(scores, k)
  reference = KMeans(k, n_init=20, random_state=0).fit(scores[:, None]).inertia_
  assert sg.inertia(scores, assignment, centres) <= reference * (1 + 1e-6)
  assert np.all(np.diff(centres) > 0)


def test_groups_are_ordered_by_score():
  scores = _three_clusters()
  for method in sg.GROUPINGS:
    groups = sg.group_scores(scores, 3, method)
    assert groups.min() == 1 and groups.max() == 3
    # Every score of group g is below every score of group g + 1.
    for g in (1, 2):
      assert scores[groups == g].max() <= scores[groups == g + 1].min()
  np.testing.assert_array_equal(
    np.bincount(sg.group_scores(scores, 3, "kmeans"))[1:], [200, 100, 40]
  )


def test_quantile_groups_are_equal_frequency_even_with_ties():
  groups = sg.group_scores(np.zeros(103), 5, "quantile")
  sizes = np.bincount(groups)[1:]
  assert sizes.sum() == 103 and sizes.max() - sizes.min() <= 1


def test_elbow_finds_three_clusters_and_bad_input_raises():
  assert sg.elbow_k(_three_clusters()) == 3, sg.elbow_k(_three_clusters())
  with pytest.raises(ValueError, match="NaN"):
    sg.group_scores(np.array([0.0, np.nan]), 2)
  with pytest.raises(ValueError, match="grouping"):
    sg.group_scores(np.arange(4.0), 2, "bins")
