"""Greedy non-maximum suppression with a fixed number of outputs (static shapes)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlsup_jax.detection.boxes import box_iou


def nms(
  boxes: jnp.ndarray,
  scores: jnp.ndarray,
  valid: jnp.ndarray,
  iou_threshold: float,
  max_outputs: int,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Indices of the boxes greedy NMS keeps, best first, padded to `max_outputs`.

  The classic algorithm: visit the boxes by descending score; keep one unless a kept box overlaps
  it with IoU > `iou_threshold`. One `fori_loop` over the K boxes on a `[K, K]` IoU matrix, so
  the shapes are fixed (K = `boxes.shape[0]`; pass a pre-selected top-K).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.detection.nms import nms
    >>> boxes = jnp.array([[0., 0., 10., 10.], [0., 1., 10., 11.], [20., 20., 30., 30.]])
    >>> index, keep = nms(boxes, jnp.array([0.9, 0.8, 0.7]), jnp.ones(3, bool), 0.5, 3)
    >>> index[keep].tolist(), keep.tolist()
    ([0, 2], [True, True, False])

  Args:
    boxes: `[K, 4]`.
    scores: `[K]`.
    valid: `[K]` bool; invalid boxes are never kept.
    iou_threshold: suppression threshold.
    max_outputs: number of indices returned.

  Returns:
    `(indices [max_outputs] int32, kept [max_outputs] bool)`; padding entries are `kept=False`.
  """
  count = boxes.shape[0]
  order = jnp.argsort(jnp.where(valid, -scores, jnp.inf))
  boxes, valid = boxes[order], valid[order]
  overlaps = box_iou(boxes, boxes) > iou_threshold

  def visit(i, keep):
    suppressed = jnp.any(keep & overlaps[i])
    return keep.at[i].set(valid[i] & ~suppressed)

  keep = jax.lax.fori_loop(0, count, visit, jnp.zeros(count, bool))
  # Kept boxes first, in score order; then the rest as padding.
  rank = jnp.where(keep, jnp.arange(count), count + jnp.arange(count))
  take = jnp.argsort(rank)[:max_outputs]
  if max_outputs > count:
    take = jnp.concatenate([take, jnp.zeros(max_outputs - count, take.dtype)])
    kept = jnp.concatenate([keep[take[:count]], jnp.zeros(max_outputs - count, bool)])
  else:
    kept = keep[take]
  return order[take].astype(jnp.int32), kept
