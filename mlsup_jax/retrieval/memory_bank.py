"""PMS's class-wise memory bank as carried state: fixed-size FIFO ring buffers updated in-step.

PMS (thesis ch. 6 §4) keeps, per finding c, the `M` most recent embeddings of images positive
for c (each image has one embedding per finding), and votes each class's proxy from them. Here
the bank is a pytree of arrays that lives in `TrainState.extra` and is updated inside the jitted
(and sharded) train step with masked scatters — no host synchronisation:

* `bank [C, M, D]`, `count [C]` (valid entries, ≤ M), `pointer [C]` (next slot of each ring);
* `update(memory, embeddings [B, C, D], positive [B, C])` writes, per class, the batch's
  positives in batch order. When a batch holds more positives of a class than the bank has
  slots, only the last `M` are written (the earlier ones would be overwritten within the same
  step; writing them too would make the scatter's result depend on XLA's order of duplicate
  writes). The batch order is the global one, so a data-parallel step over 8 devices writes
  exactly what one device writes;
* `proxies(memory)`: the L2-normalised mean of each class's valid entries (a class with none
  gets a zero proxy and `has_proxy` False).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ClassMemory", "init_memory", "proxies", "update"]


class ClassMemory(NamedTuple):
  """The bank (module docstring)."""

  bank: jax.Array  # [C, M, D]
  count: jax.Array  # [C] int32
  pointer: jax.Array  # [C] int32


def init_memory(num_classes: int, size: int, dim: int, dtype=jnp.float32) -> ClassMemory:
  """An empty bank of `size` slots per class."""
  if num_classes < 1 or size < 1 or dim < 1:
    raise ValueError(f"num_classes, size and dim must be ≥ 1; got {num_classes}, {size}, {dim}.")
  return ClassMemory(
    bank=jnp.zeros((num_classes, size, dim), dtype),
    count=jnp.zeros((num_classes,), jnp.int32),
    pointer=jnp.zeros((num_classes,), jnp.int32),
  )


def update(memory: ClassMemory, embeddings: jax.Array, positive: jax.Array) -> ClassMemory:
  """Enqueues each image's class-c embedding in class c's ring when it is positive for c.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.retrieval.memory_bank import init_memory, update
    >>> memory = init_memory(num_classes=2, size=2, dim=1)
    >>> embeddings = jnp.arange(6.0).reshape(3, 2, 1)  # 3 images × 2 classes
    >>> positive = jnp.array([[True, False], [True, True], [True, False]])
    >>> memory = update(memory, embeddings, positive)
    >>> memory.bank[0, :, 0].tolist(), memory.count.tolist(), memory.pointer.tolist()
    ([4.0, 2.0], [2, 1], [1, 1])

  Args:
    memory: the bank.
    embeddings: `[B, C, D]` class-wise embeddings (stored without gradient).
    positive: `[B, C]` bool.
  """
  num_classes, size, _ = memory.bank.shape
  positive = positive.astype(bool)
  if embeddings.shape[:2] != positive.shape or embeddings.shape[1] != num_classes:
    raise ValueError(
      f"embeddings {embeddings.shape} and positive {positive.shape} must be [B, {num_classes}, D] "
      f"and [B, {num_classes}]."
    )
  rank = jnp.cumsum(positive, axis=0, dtype=jnp.int32) - 1  # [B, C] order among positives
  total = jnp.sum(positive, axis=0, dtype=jnp.int32)  # [C]
  keep = positive & (rank >= total[None, :] - size)  # only the last `size` of the batch
  slot = (memory.pointer[None, :] + rank) % size
  slot = jnp.where(keep, slot, size)  # out of range: dropped by the scatter
  classes = jnp.broadcast_to(jnp.arange(num_classes)[None, :], slot.shape)
  values = jax.lax.stop_gradient(embeddings).astype(memory.bank.dtype)
  bank = memory.bank.at[classes, slot].set(values, mode="drop")
  return ClassMemory(
    bank=bank,
    count=jnp.minimum(memory.count + total, size),
    pointer=(memory.pointer + total) % size,
  )


def proxies(memory: ClassMemory) -> tuple[jax.Array, jax.Array]:
  """`(proxies [C, D] unit or zero, has_proxy [C] bool)`: the mean of the valid entries.

  The valid entries of a ring that has not wrapped are its first `count` slots; of a full ring,
  all of them.
  """
  _, size, _ = memory.bank.shape
  valid = jnp.arange(size)[None, :] < memory.count[:, None]  # [C, M]
  total = jnp.sum(memory.bank * valid[..., None], axis=1)
  mean = total / jnp.maximum(memory.count, 1)[:, None].astype(total.dtype)
  norm = jnp.linalg.norm(mean, axis=-1, keepdims=True)
  has = memory.count > 0
  unit = jnp.where(has[:, None], mean / jnp.maximum(norm, 1e-12), 0.0)
  return unit, has
