"""Exact top-k retrieval by blocked matrix products on the device.

`exact_top_k(queries, database, k)` scores every database row against every query (cosine or
dot product) one database block at a time — the block is moved to the device, multiplied with
the queries, reduced to its own top k, and merged with the running top k — so a database that
does not fit in device memory in one piece (≥ 1 M embeddings on a CPU) is searched with memory
`O(Q · (k + block))`. The result equals a full sort (ties broken by the lower database index).

Bad input raises `ValueError` before any work: an empty query or database set, mismatched widths,
non-finite embeddings, `k` larger than the database (minus excluded items).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["exact_top_k"]

# "weighted_l1": minus PMS's dissimilarity Σ_c w_qc |q_c − t_c| (thesis eq. 6.5; `query_weights`).
SIMILARITIES = ("cosine", "dot", "weighted_l1")


def _check(name: str, x: np.ndarray) -> None:
  if x.ndim != 2 or x.shape[0] == 0:
    raise ValueError(f"{name} must be a non-empty [N, D] array, got shape {x.shape}.")
  if not np.all(np.isfinite(x)):
    bad = int(np.sum(~np.all(np.isfinite(x), axis=1)))
    raise ValueError(f"{name} has {bad} row(s) with NaN or infinite values.")


def _unit(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnames=("k", "similarity"))
def _merge_block(
  best_scores, best_index, queries, weights, block, offset, total, excluded, k: int,
  similarity: str,
):  # fmt: skip
  """Scores of one block, masked where excluded or padded, merged into the running top k."""
  if similarity == "weighted_l1":
    # [Q, B] without a [Q, B, D] intermediate per element beyond one block.
    scores = -jnp.einsum("qbd,qd->qb", jnp.abs(queries[:, None, :] - block[None]), weights)
  else:
    block = _unit(block) if similarity == "cosine" else block
    scores = queries @ block.T  # [Q, B]
  index = offset + jnp.arange(block.shape[0], dtype=jnp.int32)
  valid = (index[None, :] != excluded[:, None]) & (index[None, :] < total)  # padding: ≥ total
  scores = jnp.where(valid, scores, -jnp.inf)
  all_scores = jnp.concatenate([best_scores, scores], axis=1)
  all_index = jnp.concatenate([best_index, jnp.broadcast_to(index, scores.shape)], axis=1)
  # Ties: `top_k` keeps the earlier column, and earlier columns hold lower database indices.
  top_scores, position = jax.lax.top_k(all_scores, k)
  return top_scores, jnp.take_along_axis(all_index, position, axis=1)


def exact_top_k(
  queries,
  database,
  k: int,
  *,
  block_size: int = 65536,
  similarity: str = "cosine",
  exclude=None,
  query_weights=None,
) -> tuple[np.ndarray, np.ndarray]:
  """The `k` most similar database rows of every query.

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.retrieval.index import exact_top_k
    >>> database = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> scores, index = exact_top_k(np.array([[1.0, 0.1]]), database, k=2, block_size=2)
    >>> index.tolist()
    [[0, 2]]

  Args:
    queries: `[Q, D]` embeddings.
    database: `[N, D]` embeddings (host memory; moved to the device block by block).
    k: results per query, ≤ N (minus one with `exclude`).
    block_size: database rows per device block.
    similarity: "cosine", "dot", or "weighted_l1" (score = −Σ_d w_qd |q_d − t_d|, PMS's
      multi-class similarity; `query_weights` default to ones — PMS unweighted). Its
      [Q, block, D] intermediate is what `block_size` bounds.
    exclude: optional `[Q]` database index to leave out per query (the query itself when the
      queries are part of the database; −1 for none).

  Returns:
    `(scores [Q, k] float32, indices [Q, k] int32)`, best first.
  """
  queries = np.asarray(queries, np.float32)
  database = np.asarray(database, np.float32)
  _check("queries", queries)
  _check("database", database)
  if queries.shape[1] != database.shape[1]:
    raise ValueError(f"queries are {queries.shape[1]}-d but the database is {database.shape[1]}-d.")
  if similarity not in SIMILARITIES:
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}.")
  weights = (
    np.ones_like(queries) if query_weights is None else np.asarray(query_weights, np.float32)
  )
  if weights.shape != queries.shape:
    raise ValueError(f"query_weights must be {queries.shape}, got {weights.shape}.")
  if similarity != "weighted_l1" and query_weights is not None:
    raise ValueError("query_weights only apply to similarity='weighted_l1'.")
  _check("query_weights", weights)
  excluded = (
    np.full(len(queries), -1, np.int32) if exclude is None else np.asarray(exclude, np.int32)
  )
  if excluded.shape != (len(queries),):
    raise ValueError(f"exclude must be [Q] = [{len(queries)}], got {excluded.shape}.")
  available = len(database) - (1 if np.any(excluded >= 0) else 0)
  if not 1 <= int(k) <= available:
    raise ValueError(f"k={k} must be in [1, {available}] (the database has {len(database)} rows).")
  if int(block_size) < 1:
    raise ValueError(f"block_size must be ≥ 1, got {block_size}.")
  k, block_size = int(k), min(int(block_size), len(database))
  q = jnp.asarray(queries)
  q = _unit(q) if similarity == "cosine" else q
  w = jnp.asarray(weights)
  best_scores = jnp.full((len(queries), k), -jnp.inf, jnp.float32)
  best_index = jnp.full((len(queries), k), -1, jnp.int32)
  excluded_device = jnp.asarray(excluded)
  for start in range(0, len(database), block_size):
    block = database[start : start + block_size]
    if len(block) < block_size:  # One compiled shape: pad the last block (masked: index ≥ N).
      pad = np.zeros((block_size - len(block), database.shape[1]), np.float32)
      block = np.concatenate([block, pad])
    best_scores, best_index = _merge_block(
      best_scores,
      best_index,
      q,
      w,
      jnp.asarray(block),
      np.int32(start),
      np.int32(len(database)),
      excluded_device,
      k,
      similarity,
    )
  return np.asarray(best_scores), np.asarray(best_index)
