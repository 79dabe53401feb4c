"""Retrieval metrics over ranked lists (standard names; the thesis's names mapped below).

Inputs are the top-K lists of a search (`retrieval/index.exact_top_k`): per query, the
relevance or graded gain of each retrieved item, best first, and how many relevant items the
whole database holds. Relevance of two label sets (`relevance`): single-label — the same class;
multi-label **exact** — identical label vectors; multi-label **partial** — at least one shared
positive label; the graded gain of a multi-label pair is the number of shared positives.

| function | definition (mean over queries) |
|---|---|
| `precision_at_k` | (#relevant in the top K) / K |
| `recall_at_k` | (#relevant in the top K) / (#relevant in the database) |
| `hit_rate_at_k` | 1[at least one relevant in the top K] |
| `map_at_k` | AP@K = Σ_{i ≤ K} P@i · rel_i / min(K, #relevant in the database) |
| `acg_at_k` | (Σ_{i ≤ K} gain_i) / K |
| `ndcg_at_k` | DCG@K / IDCG@K, DCG = Σ g(gain_i) / log2(i + 1), g below |
| `outlier_sensitivity_at_k` | S@K = mean of |A_i − A_q| over the relevant items i in the top K |

NDCG's gain g is 2^gain − 1 ("exponential") or the gain itself ("linear", scikit-learn's).
S@K is OSCARS's outlier sensitivity (A: anomaly scores; lower = more sensitive to outliers);
queries with no relevant item in the top K are left out of it.

The thesis's names (spec thesis_ch5_6 §3.6 and §4.9): OSCARS's **"R@K"** and PMS's **"P@K"** are
`precision_at_k`; OSCARS's **"P@K"** (printed as Σ δ(R^i > 0) / K, a typo by its own numbers) is
`hit_rate_at_k` — the "Recall@K" of the metric-learning literature. `THESIS_NAMES` maps them.

Queries with no relevant item in the database count 0 in `recall_at_k` and `map_at_k` (as
scikit-learn, which warns and returns 0); `ndcg_at_k` of a query whose ideal DCG is 0 is 0.
"""

from __future__ import annotations

import numpy as np

__all__ = [
  "THESIS_NAMES",
  "acg_at_k",
  "hit_rate_at_k",
  "map_at_k",
  "ndcg_at_k",
  "outlier_sensitivity_at_k",
  "precision_at_k",
  "recall_at_k",
  "relevance",
  "shared_positives",
]

THESIS_NAMES = {
  "OSCARS R@K": "precision_at_k",
  "OSCARS P@K": "hit_rate_at_k",
  "PMS P@K": "precision_at_k",
  "OSCARS S@K": "outlier_sensitivity_at_k",
}
MODES = ("single", "exact", "partial")


def shared_positives(query_labels, item_labels) -> np.ndarray:
  """Graded gain: shared positive labels of multi-label `[Q, C]` queries and `[Q, K, C]` items."""
  q = np.asarray(query_labels).astype(bool)
  items = np.asarray(item_labels).astype(bool)
  return np.sum(q[:, None, :] & items, axis=-1)


def relevance(query_labels, item_labels, mode: str) -> np.ndarray:
  """`[Q, K]` bool relevance of retrieved items to their queries.

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.retrieval import relevance
    >>> q = np.array([[1, 0, 1]]); items = np.array([[[1, 0, 1], [0, 0, 1], [0, 1, 0]]])
    >>> relevance(q, items, "exact").tolist(), relevance(q, items, "partial").tolist()
    ([[True, False, False]], [[True, True, False]])

  Args:
    query_labels: `[Q]` classes ("single") or `[Q, C]` 0/1 label vectors.
    item_labels: `[Q, K]` classes or `[Q, K, C]` label vectors of each query's retrieved items.
    mode: "single" (same class), "exact" (identical vectors) or "partial" (≥ 1 shared positive).
  """
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
  q, items = np.asarray(query_labels), np.asarray(item_labels)
  if mode == "single":
    return items == q[:, None]
  if mode == "exact":
    return np.all(items == q[:, None, :], axis=-1)
  return shared_positives(q, items) > 0


def _relevant(rel) -> np.ndarray:
  rel = np.asarray(rel).astype(bool)
  if rel.ndim != 2 or rel.shape[1] == 0:
    raise ValueError(f"relevance must be [Q, K] with K ≥ 1, got {rel.shape}.")
  return rel


def precision_at_k(rel) -> float:
  """Mean over queries of (#relevant in the top K) / K; `rel: [Q, K]`."""
  return float(np.mean(_relevant(rel).mean(axis=1)))


def hit_rate_at_k(rel) -> float:
  """Fraction of queries with at least one relevant item in the top K."""
  return float(np.mean(_relevant(rel).any(axis=1)))


def recall_at_k(rel, num_relevant) -> float:
  """Mean over queries of (#relevant in the top K) / (#relevant in the database)."""
  rel = _relevant(rel)
  total = np.asarray(num_relevant, np.float64)
  found = rel.sum(axis=1)
  if np.any(found > total):
    raise ValueError("num_relevant is smaller than the relevant items retrieved.")
  return float(np.mean(np.where(total > 0, found / np.maximum(total, 1), 0.0)))


def map_at_k(rel, num_relevant) -> float:
  """Mean AP@K = Σ_{i ≤ K} P@i · rel_i / min(K, #relevant in the database).

  With K = the database size this is scikit-learn's `average_precision_score` per query.
  """
  rel = _relevant(rel).astype(np.float64)
  k = rel.shape[1]
  precision = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
  total = np.minimum(np.asarray(num_relevant, np.float64), k)
  ap = np.sum(precision * rel, axis=1)
  return float(np.mean(np.where(total > 0, ap / np.maximum(total, 1), 0.0)))


def acg_at_k(gains) -> float:
  """Mean over queries of the average graded gain of the top K; `gains: [Q, K]`."""
  gains = np.asarray(gains, np.float64)
  return float(np.mean(gains.mean(axis=1)))


def ndcg_at_k(gains, ideal_gains, gain: str = "exponential") -> float:
  """Mean NDCG@K of retrieved `gains: [Q, K]` against the database's best `ideal_gains: [Q, K]`
  (the K largest gains of each query over the whole database, any order).

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.retrieval import ndcg_at_k
    >>> round(ndcg_at_k([[0, 1]], [[1, 0]], gain="linear"), 4)  # 1/log2(3) over 1/log2(2)
    0.6309
  """
  if gain not in ("exponential", "linear"):
    raise ValueError(f"gain must be 'exponential' or 'linear', got {gain!r}.")
  g = np.asarray(gains, np.float64)
  ideal = -np.sort(-np.asarray(ideal_gains, np.float64), axis=1)
  if g.shape != ideal.shape or g.ndim != 2:
    raise ValueError(f"gains {g.shape} and ideal_gains {ideal.shape} must be equal [Q, K].")
  transform = (lambda x: 2.0**x - 1.0) if gain == "exponential" else (lambda x: x)
  discount = 1.0 / np.log2(np.arange(2, g.shape[1] + 2))
  dcg = transform(g) @ discount
  idcg = transform(ideal) @ discount
  return float(np.mean(np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)))


def outlier_sensitivity_at_k(rel, query_scores, item_scores) -> tuple[float, int]:
  """S@K: mean |A_i − A_q| over the relevant retrieved items, averaged over queries.

  Args:
    rel: `[Q, K]` relevance. query_scores: `[Q]` anomaly scores A_q.
    item_scores: `[Q, K]` anomaly scores of the retrieved items.

  Returns:
    `(S@K, number of queries used)` — queries without a relevant item in the top K are left
    out (NaN when none is left).
  """
  rel = _relevant(rel)
  diff = np.abs(np.asarray(item_scores, np.float64) - np.asarray(query_scores, np.float64)[:, None])
  count = rel.sum(axis=1)
  used = count > 0
  if not used.any():
    return float("nan"), 0
  per_query = np.sum(np.where(rel, diff, 0.0), axis=1)[used] / count[used]
  return float(np.mean(per_query)), int(used.sum())
