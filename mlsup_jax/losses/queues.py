"""Fixed-size FIFO queues (ring buffers) of embeddings, updated inside a jitted step.

Contrastive and distillation losses keep earlier embeddings as negatives or anchors: ACTION's
queue of 36 pooled embeddings, ACTION++'s queue of 12 288 labelled pixel embeddings. Here a
queue is an array `[Q, …]` and a pointer; `enqueue` writes the kept rows of a batch in order at
the pointer, wrapping around, and drops the others, so shapes never depend on how many rows are
kept. Rows kept in one call must not exceed `Q` (they would overwrite each other).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def enqueue(queue: jax.Array, pointer: jax.Array, items: jax.Array, keep: jax.Array | None = None):
  """Writes the kept `items` into `queue` at `pointer` (in order, wrapping); `(queue, pointer)`.

  Args:
    queue: `[Q, …]`.
    pointer: `[]` int32, the next slot.
    items: `[N, …]` rows of the queue's row shape.
    keep: `[N]` bool (default: all).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.queues import enqueue
    >>> q, p = enqueue(jnp.zeros(4), jnp.int32(3), jnp.array([1.0, 2.0, 3.0]),
    ...                jnp.array([True, False, True]))
    >>> q.tolist(), int(p)
    ([3.0, 0.0, 0.0, 1.0], 1)
  """
  size = queue.shape[0]
  keep = jnp.ones(items.shape[:1], bool) if keep is None else keep
  rank = jnp.cumsum(keep) - 1
  slots = jnp.where(keep, (pointer + rank) % size, size)  # `size` is out of range: dropped
  queue = queue.at[slots].set(items.astype(queue.dtype), mode="drop")
  return queue, ((pointer + jnp.sum(keep)) % size).astype(jnp.int32)
