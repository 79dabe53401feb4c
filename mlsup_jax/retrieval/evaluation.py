"""One retrieval evaluation: rank a database for every query, then score the ranked lists.

`ranked_report(...)` searches with `index.exact_top_k` (any similarity it supports) and returns
the metrics of `metrics/retrieval.py` at every K, under each relevance mode, named
`<prefix>/<metric>@<K>/<mode>` (e.g. `pms/map@10/exact`). The number of relevant items in the
whole database (for mAP and recall) is counted exactly, block by block.

Queries and database: given separately (`query` flags from `data/sources/query_database.py`),
or, with `database=None`, leave-one-out over one set (each image queries all the others).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlsup_jax.metrics import retrieval as metrics
from mlsup_jax.retrieval.index import exact_top_k

__all__ = ["count_relevant", "ranked_report", "split_queries"]


def split_queries(is_query) -> tuple[np.ndarray, np.ndarray | None]:
  """`(query indices, database indices or None)` from per-example flags (None: leave-one-out).

  Raises:
    ValueError: flags that mark every example a query, or no example.
  """
  if is_query is None:
    return None, None
  flags = np.asarray(is_query).astype(bool).reshape(-1)
  if not flags.any():
    raise ValueError("The evaluation set flags no query.")
  if flags.all():
    raise ValueError("The evaluation set flags every example as a query: the database is empty.")
  return np.flatnonzero(flags), np.flatnonzero(~flags)


def count_relevant(query_labels, database_labels, mode: str, exclude=None, block: int = 4096):
  """`[Q]` number of database items relevant to each query (`exclude[q]`: one index left out)."""
  q = np.asarray(query_labels)
  db = np.asarray(database_labels)
  counts = np.zeros(len(q), np.int64)
  for start in range(0, len(db), block):
    part = db[start : start + block]
    items = np.broadcast_to(part[None], (len(q), *part.shape))
    rel = metrics.relevance(q, items, mode)
    if exclude is not None:
      index = start + np.arange(len(part))
      rel = rel & (index[None, :] != np.asarray(exclude)[:, None])
    counts += rel.sum(axis=1)
  return counts


def ranked_report(
  query_vectors,
  query_labels,
  database_vectors=None,
  database_labels=None,
  *,
  ks: Sequence[int] = (1, 5, 10, 50),
  modes: Sequence[str] = ("exact", "partial"),
  similarity: str = "cosine",
  query_weights=None,
  prefix: str = "",
  block_size: int = 65536,
  with_index: bool = False,
):
  """Retrieval metrics at every K and relevance mode.

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.retrieval.evaluation import ranked_report
    >>> vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> labels = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])
    >>> ranked_report(vectors, labels, ks=(1,), modes=("exact",))["precision@1/exact"]
    1.0

  Args:
    query_vectors: `[Q, D]`. query_labels: `[Q]` classes or `[Q, C]` label vectors.
    database_vectors, database_labels: `[N, D]`, `[N(, C)]`; None: leave-one-out on the queries.
    ks: cut-offs (each ≤ the database size; larger ones are dropped with the database's size
      recorded as `num_database`).
    modes: relevance modes of `metrics.retrieval.relevance`.
    similarity, query_weights, block_size: as `index.exact_top_k`.
    prefix: name prefix (`"pms"` → `pms/precision@1/exact`).
    with_index: also return the search's `[Q, max K]` database indices (best first), so a
      caller's own metrics need no second search.

  Returns:
    `precision@K`, `map@K`, `hit_rate@K`, `recall@K` and `chance_precision` (a random
    ranking's expected precision@K, any K) per mode (and, for multi-label sets,
    graded by shared positives: `ndcg@K` with exponential gain, `ndcg_linear@K` — scikit-learn's
    `ndcg_score` — and `acg@K`), plus `num_queries` / `num_database`; with `with_index`,
    `(report, indices)`.
  """
  loo = database_vectors is None
  if loo:
    database_vectors, database_labels = query_vectors, query_labels
  n = len(database_vectors)
  exclude = np.arange(len(query_vectors)) if loo else None
  available = n - (1 if loo else 0)
  ks = sorted({int(k) for k in ks if 1 <= int(k) <= available})
  if not ks:
    raise ValueError(f"No cut-off K fits a database of {available} items.")
  _, index = exact_top_k(
    query_vectors, database_vectors, max(ks), similarity=similarity, exclude=exclude,
    query_weights=query_weights, block_size=block_size,
  )  # fmt: skip
  q_labels, db_labels = np.asarray(query_labels), np.asarray(database_labels)
  retrieved = db_labels[index]
  pre = f"{prefix}/" if prefix else ""
  report = {f"{pre}num_queries": float(len(query_vectors)), f"{pre}num_database": float(available)}
  multi_label = q_labels.ndim == 2
  for mode in modes:
    rel = metrics.relevance(q_labels, retrieved, mode)
    total = count_relevant(q_labels, db_labels, mode, exclude)
    # What a random ranking scores on average: precision@K's chance level for this mode.
    report[f"{pre}chance_precision/{mode}"] = float(np.mean(total / available))
    for k in ks:
      report[f"{pre}precision@{k}/{mode}"] = metrics.precision_at_k(rel[:, :k])
      report[f"{pre}map@{k}/{mode}"] = metrics.map_at_k(rel[:, :k], total)
      report[f"{pre}hit_rate@{k}/{mode}"] = metrics.hit_rate_at_k(rel[:, :k])
      report[f"{pre}recall@{k}/{mode}"] = metrics.recall_at_k(rel[:, :k], total)
  if multi_label:
    gains = metrics.shared_positives(q_labels, retrieved)
    for k in ks:
      ideal = _ideal_gains(q_labels, db_labels, k, exclude)
      report[f"{pre}ndcg@{k}"] = metrics.ndcg_at_k(gains[:, :k], ideal)
      report[f"{pre}ndcg_linear@{k}"] = metrics.ndcg_at_k(gains[:, :k], ideal, gain="linear")
      report[f"{pre}acg@{k}"] = metrics.acg_at_k(gains[:, :k])
  return (report, index) if with_index else report


def _ideal_gains(q_labels, db_labels, k: int, exclude) -> np.ndarray:
  gains = metrics.shared_positives(
    q_labels, np.broadcast_to(db_labels[None], (len(q_labels), *db_labels.shape))
  )
  if exclude is not None:
    gains = gains.astype(np.int64)
    gains[np.arange(len(q_labels)), exclude] = -1
  return np.clip(-np.sort(-gains, axis=1)[:, :k], 0, None)
