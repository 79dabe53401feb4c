"""Nearest-neighbour memory term: pull an image's embedding towards its teacher's neighbours.

MONA's "nearest neighbours" idea (ARCO shares the code): keep a small queue of the EMA teacher's
whole-image embeddings; for each image, the teacher's embedding picks its `k` nearest queue
entries and the student's embedding of the (strongly augmented) image is pulled towards them —
the mean squared distance of unit vectors, `2 − 2 cos`, over the `k` neighbours (Koohpayegani et
al.'s mean-shift target, MSF). The queue entries carry no gradient.

The authors' code (`get_revisiting_loss`) chooses the neighbours with the *student's*
distances and then averages the *teacher's* distances to them: its loss depends on the student
only through an `argsort`, so no gradient reaches the trained network and the term does nothing.
Here the roles are MSF's: the teacher chooses, the student is pulled.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlsup_jax.losses.embeddings import l2_normalise


def pooled_embedding(embedding: jax.Array, pool: int) -> jax.Array:
  """One unit vector per image: the embedding map average-pooled to `pool` cells per axis.

  Args:
    embedding: `[B, *S, D]` pixel embeddings (every spatial size divisible by `pool`).
    pool: cells per spatial axis.

  Returns:
    `[B, pool^len(S) · D]`, L2-normalised.

  Raises:
    ValueError: when a spatial size is not divisible by `pool`.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.nearest_neighbours import pooled_embedding
    >>> pooled_embedding(jnp.ones((2, 8, 8, 3)), pool=2).shape
    (2, 12)
  """
  spatial = embedding.shape[1:-1]
  if any(size % pool for size in spatial):
    raise ValueError(f"Spatial sizes {spatial} are not divisible by the memory pool {pool}.")
  shape = [embedding.shape[0]]
  for size in spatial:
    shape += [pool, size // pool]
  x = embedding.reshape(*shape, embedding.shape[-1])
  x = jnp.mean(x, axis=tuple(range(2, 2 * len(spatial) + 1, 2)))
  return l2_normalise(x.reshape(x.shape[0], -1))


def nearest_neighbour_loss(
  student: jax.Array, teacher: jax.Array, memory: jax.Array, filled: jax.Array, topk: int
) -> tuple[jax.Array, dict]:
  """Mean `2 − 2 cos` between each student embedding and its teacher's `topk` nearest entries.

  Args:
    student: `[B, E]` unit vectors (with gradient).
    teacher: `[B, E]` unit vectors (no gradient): they choose the neighbours.
    memory: `[Q, E]` unit vectors, the queue.
    filled: `[Q]` bool, which queue rows hold an embedding yet.
    topk: neighbours per image (≤ Q); empty rows are never chosen, and with fewer than `topk`
      filled rows only the filled ones count (0 with none: the term is off until the queue
      fills).

  Returns:
    `(loss [], {"neighbour_similarity": mean cosine of the student to its neighbours})`.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.nearest_neighbours import nearest_neighbour_loss
    >>> memory = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> loss, _ = nearest_neighbour_loss(jnp.array([[0.0, 1.0]]), jnp.array([[1.0, 0.0]]),
    ...                                  memory, jnp.array([True, True]), topk=1)
    >>> float(loss)  # the teacher's neighbour is row 0, orthogonal to the student
    2.0
  """
  memory = jax.lax.stop_gradient(memory)
  teacher = jax.lax.stop_gradient(teacher)
  if not 1 <= topk <= memory.shape[0]:
    raise ValueError(f"topk={topk} must lie in [1, queue size {memory.shape[0]}].")
  choice = jnp.where(filled[None, :], teacher @ memory.T, -jnp.inf)
  _, index = jax.lax.top_k(choice, topk)  # [B, k]
  valid = filled[index].astype(student.dtype)
  similarity = jnp.take_along_axis(student @ memory.T, index, axis=1)
  count = jnp.maximum(jnp.sum(valid), 1.0)
  loss = jnp.sum((2.0 - 2.0 * similarity) * valid) / count
  return loss, {"neighbour_similarity": jnp.sum(similarity * valid) / count}
