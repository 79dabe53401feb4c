"""Exact blocked top-k search: equals a full sort, any block size; bad input is rejected."""

import numpy as np
import pytest

from mlsup_jax.retrieval.index import exact_top_k


def _brute(queries, database, k, cosine=True, exclude=None):
  if cosine:
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    database = database / np.linalg.norm(database, axis=1, keepdims=True)
  scores = queries @ database.T
  if exclude is not None:
    scores[np.arange(len(queries)), exclude] = -np.inf
  order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(scores, order, 1), order


@pytest.mark.parametrize("block_size", [1, 7, 64, 1000])
@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_equals_a_full_sort(block_size, similarity):
  rng = np.random.default_rng(0)
  database = rng.normal(size=(101, 8)).astype(np.float32)
  queries = rng.normal(size=(5, 8)).astype(np.float32)
  scores, index = exact_top_k(queries, database, 10, block_size=block_size, similarity=similarity)
  want_scores, want_index = _brute(queries, database, 10, similarity == "cosine")
  np.testing.assert_array_equal(index, want_index)
  np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


def test_ties_go_to_the_lower_index_and_exclusion_works():
  database = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
  _, index = exact_top_k(np.array([[1.0, 0.0]]), database, 3, block_size=2)
  assert index.tolist() == [[0, 1, 3]]
  _, index = exact_top_k(database[:2], database, 2, block_size=3, exclude=[0, 1])
  assert index.tolist() == [[1, 3], [0, 3]]


def test_bad_input():
  good = np.ones((3, 2))
  with pytest.raises(ValueError, match="k=4"):
    exact_top_k(good, good, 4)
  with pytest.raises(ValueError, match="k=3"):
    exact_top_k(good, good, 3, exclude=[0, 1, 2])
  with pytest.raises(ValueError, match="queries must be a non-empty"):
    exact_top_k(np.zeros((0, 2)), good, 1)
  with pytest.raises(ValueError, match="database must be a non-empty"):
    exact_top_k(good, np.zeros((0, 2)), 1)
  with pytest.raises(ValueError, match="NaN"):
    exact_top_k(good, np.array([[np.nan, 1.0], [1.0, 1.0]]), 1)
  with pytest.raises(ValueError, match="-d"):
    exact_top_k(good, np.ones((3, 4)), 1)
  with pytest.raises(ValueError, match="similarity"):
    exact_top_k(good, good, 1, similarity="l2")
