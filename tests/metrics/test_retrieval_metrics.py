"""Retrieval metrics against hand-computed cases and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, ndcg_score

from mlsup_jax.metrics import retrieval as rm


def test_hand_computed_lists():
  rel = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], bool)
  assert rm.precision_at_k(rel) == pytest.approx((2 / 4 + 0) / 2)
  assert rm.hit_rate_at_k(rel) == 0.5
  assert rm.recall_at_k(rel, [4, 0]) == pytest.approx((2 / 4 + 0) / 2)
  # AP@4 of query 0: (1/1 + 2/3) / min(4, 3 relevant in the database).
  assert rm.map_at_k(rel, [3, 0]) == pytest.approx(((1 + 2 / 3) / 3 + 0) / 2)
  assert rm.acg_at_k([[2, 0, 1, 1]]) == 1.0


def test_map_over_the_whole_ranking_is_sklearns_average_precision():
  rng = np.random.default_rng(0)
  aps, rels = [], []
  for _ in range(6):
    y = rng.integers(0, 2, 30)
    y[0] = 1
    scores = rng.permutation(30).astype(float)  # distinct scores: no ties
    aps.append(average_precision_score(y, scores))
    rels.append(y[np.argsort(-scores)])
  rels = np.array(rels)
  assert rm.map_at_k(rels, rels.sum(axis=1)) == pytest.approx(np.mean(aps))


@pytest.mark.parametrize("k", [3, 10, 30])
def test_linear_ndcg_is_sklearns(k):
  rng = np.random.default_rng(1)
  gains = rng.integers(0, 4, (5, 30)).astype(float)
  scores = np.stack([rng.permutation(30) for _ in range(5)]).astype(float)
  order = np.argsort(-scores, axis=1)
  retrieved = np.take_along_axis(gains, order, 1)[:, :k]
  ideal = -np.sort(-gains, axis=1)[:, :k]
  expected = ndcg_score(gains, scores, k=k)
  assert rm.ndcg_at_k(retrieved, ideal, gain="linear") == pytest.approx(expected)


def test_exponential_ndcg_by_hand():
  # gains (2, 0) against the ideal (2, 1): DCG = 3, IDCG = 3 + 1/log2(3).
  assert rm.ndcg_at_k([[2, 0]], [[1, 2]]) == pytest.approx(3 / (3 + 1 / np.log2(3)))
  assert rm.ndcg_at_k([[0, 0]], [[0, 0]]) == 0.0


def test_relevance_modes_and_outlier_sensitivity():
  q = np.array([[1, 1, 0]])
  items = np.array([[[1, 1, 0], [1, 0, 0], [0, 0, 1]]])
  assert rm.relevance(q, items, "exact").tolist() == [[True, False, False]]
  assert rm.relevance(q, items, "partial").tolist() == [[True, True, False]]
  assert rm.shared_positives(q, items).tolist() == [[2, 1, 0]]
  assert rm.relevance(np.array([3]), np.array([[3, 1, 3]]), "single").tolist() == [
    [True, False, True]
  ]
  rel = np.array([[True, False, True], [False, False, False]])
  value, used = rm.outlier_sensitivity_at_k(rel, [0.5, 0.1], [[0.7, 0.0, 0.1], [0.2, 0.2, 0.2]])
  assert used == 1 and value == pytest.approx((0.2 + 0.4) / 2)
  assert np.isnan(rm.outlier_sensitivity_at_k(rel[1:], [0.1], [[0.1, 0.1, 0.1]])[0])
  assert rm.THESIS_NAMES["OSCARS P@K"] == "hit_rate_at_k"


def test_bad_input():
  with pytest.raises(ValueError, match="mode"):
    rm.relevance(np.array([1]), np.array([[1]]), "loose")
  with pytest.raises(ValueError, match="K ≥ 1"):
    rm.precision_at_k(np.zeros((2, 0)))
  with pytest.raises(ValueError, match="num_relevant"):
    rm.recall_at_k([[True, True]], [1])
  with pytest.raises(ValueError, match="gain"):
    rm.ndcg_at_k([[1]], [[1]], gain="log")
