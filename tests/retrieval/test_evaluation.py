"""The retrieval report against scikit-learn and hand-computed cases."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, ndcg_score

from mlsup_jax.metrics import retrieval as metrics
from mlsup_jax.retrieval.evaluation import count_relevant, ranked_report, split_queries


def _data(seed=0, q=6, n=30, c=4, d=5):
  rng = np.random.default_rng(seed)
  labels = (rng.random((q + n, c)) < 0.4).astype(np.uint8)
  vectors = rng.normal(size=(q + n, d)).astype(np.float32)
  return vectors[:q], labels[:q], vectors[q:], labels[q:]


def _cosine(a, b):
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  b = b / np.linalg.norm(b, axis=1, keepdims=True)
  return a @ b.T


def test_full_depth_map_equals_sklearn_average_precision():
  qv, ql, dv, dl = _data()
  report = ranked_report(qv, ql, dv, dl, ks=(len(dv),), modes=("partial",))
  scores = _cosine(qv, dv)
  rel = metrics.shared_positives(ql, np.broadcast_to(dl[None], (len(ql), *dl.shape))) > 0
  expected = np.mean([
    average_precision_score(rel[i], scores[i]) if rel[i].any() else 0.0 for i in range(len(ql))
  ])  # fmt: skip
  np.testing.assert_allclose(report[f"map@{len(dv)}/partial"], expected, rtol=1e-6)


def test_linear_ndcg_equals_sklearn():
  qv, ql, dv, dl = _data(1)
  report = ranked_report(qv, ql, dv, dl, ks=(5, 10), modes=("exact",))
  gains = metrics.shared_positives(ql, np.broadcast_to(dl[None], (len(ql), *dl.shape)))
  for k in (5, 10):
    expected = ndcg_score(gains, _cosine(qv, dv), k=k)
    np.testing.assert_allclose(report[f"ndcg_linear@{k}"], expected, rtol=1e-6)


def test_leave_one_out_never_retrieves_the_query_itself():
  # Every vector is its own nearest neighbour; leave-one-out must skip it.
  vectors = np.eye(4, dtype=np.float32) + 0.01
  labels = np.array([0, 0, 1, 1])
  report = ranked_report(vectors, labels, ks=(1, 3), modes=("single",))
  assert report["num_database"] == 3.0
  # Hand-computed: each item's best other item is equally far; ties go to the lower index.
  # Ranks: 0 → 1 (relevant), 1 → 0 (relevant), 2 → 0 (not), 3 → 0 (not) → P@1 = 0.5.
  assert report["precision@1/single"] == 0.5
  np.testing.assert_allclose(report["chance_precision/single"], 1 / 3)  # 1 relevant of 3 others
  np.testing.assert_array_equal(count_relevant(labels, labels, "single", np.arange(4)), [1] * 4)


def test_pms_weighted_l1_ranks_by_the_query_weights():
  # Query similarities (1, 0); item A differs in class 0, item B in class 1. With all weight on
  # class 1 (p = (0, 1)) A is the closer item; unweighted they tie and the lower index wins.
  query = np.array([[1.0, 0.0]])
  database = np.array([[0.0, 0.0], [1.0, 1.0]])
  labels_q, labels_db = np.array([[1, 0]]), np.array([[0, 1], [1, 0]])

  def top(weights):
    return ranked_report(query, labels_q, database, labels_db, ks=(1,), modes=("exact",),
                         similarity="weighted_l1", query_weights=np.array([weights]))  # fmt: skip

  weighted, flipped = top([0.0, 1.0]), top([1.0, 0.0])
  assert weighted["precision@1/exact"] == 0.0  # item 0 (labels [0, 1]) first
  assert flipped["precision@1/exact"] == 1.0  # item 1 (labels [1, 0]) first


def test_bad_input_is_a_clear_error():
  qv, ql, dv, dl = _data()
  with pytest.raises(ValueError, match="No cut-off"):
    ranked_report(qv, ql, dv[:3], dl[:3], ks=(5,))
  bad = qv.copy()
  bad[0, 0] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    ranked_report(bad, ql, dv, dl, ks=(1,))
  with pytest.raises(ValueError, match="non-empty"):
    ranked_report(qv[:0], ql[:0], dv, dl, ks=(1,))
  with pytest.raises(ValueError, match="database is empty"):
    split_queries(np.ones(4))
  with pytest.raises(ValueError, match="no query"):
    split_queries(np.zeros(4))
  assert split_queries(None) == (None, None)


def test_k_beyond_the_database_is_dropped_and_recorded():
  qv, ql, dv, dl = _data()
  report = ranked_report(qv, ql, dv[:8], dl[:8], ks=(1, 5, 50), modes=("exact",))
  assert "precision@50/exact" not in report and "precision@5/exact" in report
  assert report["num_database"] == 8.0
