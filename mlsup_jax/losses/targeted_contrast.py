"""ACTION++'s supervised adaptive contrastive loss (targeted supervised contrast, TSC).

Anchors are labelled pixels, `anchors_per_class` drawn uniformly per class present in the
labelled batch; each anchor is the student's embedding of its pixel. Its candidates are, all
L2-normalised: the EMA teacher's embedding of the same pixel (always positive), a FIFO queue of
earlier teacher anchor embeddings with their labels (positive when the label is the anchor's),
and the `C` fixed target centres (`class_centres.uniform_centres`; positive only for the centre
matched to the anchor's class). With `log p = log softmax(logits / τ)` over the candidates,

  loss = −mean_anchors [ Σ_{self, same-class queue} log p + w · log p(matched centre) ] / #pos

(`#pos` counts every positive incl. the centre; `w = target_weight`), as the authors' `TSC.py`
computes it — but with `logsumexp` (their `log(normalise(exp(logits / τ)))` sums
`exp(1 / 0.07) ≈ 1.6e6` over 12 288 slots: past float16's range under mixed precision, and
`log 0` for far candidates) and with empty queue slots (label −1) left out of the softmax
instead of contrasting against random vectors. After the loss, the teacher anchors of the
present classes are enqueued (a ring buffer of fixed size, at least the number of anchors per
step) and the running class centroids move by `0.9 · old + 0.1 · batch mean` of the anchors
(renormalised); the class → centre assignment is recomputed from the moved centroids every step
(`class_centres.match_centres`), before the loss uses it, as in the authors' code.

All shapes are fixed: `[C · A]` anchors with weights (0 for absent classes).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlsup_jax.losses.class_centres import match_centres
from mlsup_jax.losses.embeddings import l2_normalise
from mlsup_jax.losses.queues import enqueue


class ContrastMemory(NamedTuple):
  """The carried state of the loss.

  Attributes:
    queue: `[Q, D]` teacher anchor embeddings (normalised).
    queue_labels: `[Q]` int32 class of each slot, −1 = empty.
    pointer: `[]` int32 next slot to write.
    centroids: `[C, D]` running class centroids (normalised).
  """

  queue: jax.Array
  queue_labels: jax.Array
  pointer: jax.Array
  centroids: jax.Array


def init_memory(key: jax.Array, queue_size: int, num_classes: int, dim: int) -> ContrastMemory:
  """An empty queue and random unit centroids (as the authors initialise them)."""
  return ContrastMemory(
    queue=jnp.zeros((queue_size, dim), jnp.float32),
    queue_labels=-jnp.ones((queue_size,), jnp.int32),
    pointer=jnp.zeros((), jnp.int32),
    centroids=l2_normalise(jax.random.normal(key, (num_classes, dim))),
  )


def targeted_contrast(
  student: jax.Array,
  teacher: jax.Array,
  labels: jax.Array,
  weights: jax.Array,
  memory: ContrastMemory,
  centres: jax.Array,
  temperature: jax.Array,
  target_weight: float = 0.1,
) -> tuple[jax.Array, ContrastMemory, dict]:
  """The TSC loss of the anchors and the updated memory (module docstring).

  Args:
    student: `[N, D]` student embeddings of the anchors.
    teacher: `[N, D]` teacher embeddings of the same pixels (no gradient).
    labels: `[N]` int32 anchor classes.
    weights: `[N]` ≥ 0 anchor weights (0 = padding; a class's weights sum to 1 when present).
    memory: the queue and centroids.
    centres: `[C, D]` the fixed target centres.
    temperature: τ (scalar, e.g. from `class_centres.cosine_temperature`).
    target_weight: w, the centre term's weight (ACTION++'s `lambda_tsc` 0.1).

  Returns:
    `(loss, new memory, {"tsc_positives": mean positives per anchor})`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from mlsup_jax.losses import targeted_contrast as tsc
    >>> memory = tsc.init_memory(jax.random.key(0), queue_size=8, num_classes=2, dim=2)
    >>> anchors = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> loss, memory, _ = tsc.targeted_contrast(
    ...   anchors, anchors, jnp.array([0, 1]), jnp.ones(2), memory, jnp.eye(2), 1.0)
    >>> int(memory.pointer), memory.queue_labels.tolist()[:3]
    (2, [0, 1, -1])
  """
  num_classes = centres.shape[0]
  student = l2_normalise(student.astype(jnp.float32))
  teacher = jax.lax.stop_gradient(l2_normalise(teacher.astype(jnp.float32)))
  present = weights > 0
  # The centroids move first, then the class → centre assignment is computed from them.
  one_hot = jax.nn.one_hot(labels, num_classes) * present[:, None]
  counts = jnp.sum(one_hot, axis=0)
  batch_mean = l2_normalise(one_hot.T @ jax.lax.stop_gradient(student))
  moved = l2_normalise(0.9 * memory.centroids + 0.1 * batch_mean)
  centroids = jnp.where((counts > 0)[:, None], moved, memory.centroids)
  assignment = match_centres(centroids, centres)  # class c → centre assignment[c]

  positive = jnp.sum(student * teacher, axis=-1, keepdims=True)  # [N, 1]
  queue_logits = student @ memory.queue.T  # [N, Q]
  centre_logits = student @ centres.T  # [N, C]
  logits = jnp.concatenate([positive, queue_logits, centre_logits], axis=1) / temperature
  filled = memory.queue_labels >= 0
  usable = jnp.concatenate([jnp.ones((1,), bool), filled, jnp.ones((num_classes,), bool)])
  logits = jnp.where(usable[None, :], logits, -jnp.inf)
  log_prob = logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)

  same_class = (memory.queue_labels[None, :] == labels[:, None]) & filled[None, :]
  matched = jnp.arange(num_classes)[None, :] == assignment[labels][:, None]  # [N, C]
  class_mask = jnp.concatenate(
    [jnp.ones_like(positive, bool), same_class, jnp.zeros_like(matched)], axis=1
  )
  target_mask = jnp.concatenate(
    [jnp.zeros_like(positive, bool), jnp.zeros_like(same_class), matched], axis=1
  )
  safe = jnp.where(usable[None, :], log_prob, 0.0)
  num_positive = jnp.sum(class_mask, axis=1) + jnp.sum(target_mask, axis=1)
  class_term = -jnp.sum(jnp.where(class_mask, safe, 0.0), axis=1) / num_positive
  target_term = -jnp.sum(jnp.where(target_mask, safe, 0.0), axis=1) / num_positive
  per_anchor = class_term + target_weight * target_term
  present_classes = jnp.maximum(jnp.sum(counts > 0), 1)
  loss = jnp.sum(weights * per_anchor) / present_classes

  # Enqueue the present anchors' teacher embeddings in order (ring buffer); padding is dropped.
  queue, pointer = enqueue(memory.queue, memory.pointer, teacher, present)
  queue_labels, _ = enqueue(memory.queue_labels, memory.pointer, labels, present)
  new_memory = ContrastMemory(queue, queue_labels, pointer, centroids)
  mean_positives = jnp.sum(weights * num_positive) / present_classes
  return loss, new_memory, {"tsc_positives": mean_positives}
