"""Detections → an instance label map: each mask resampled into its box, the best score on top."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _resampling_matrix(starts, ends, length: int, size: int) -> jnp.ndarray:
  """`[D, length, size]`: bilinear weights of a `size`-cell mask axis spread over [start, end)."""
  pixel = jnp.arange(length, dtype=jnp.float32) + 0.5
  extent = jnp.maximum(ends - starts, 1e-3)
  # Position of each image pixel centre in mask-cell units (cell centres at 0.5, 1.5, …).
  u = (pixel[None, :] - starts[:, None]) / extent[:, None] * size - 0.5
  cells = jnp.arange(size, dtype=jnp.float32)
  weights = jnp.clip(1.0 - jnp.abs(u[:, :, None] - cells[None, None, :]), 0.0, 1.0)
  # Renormalise at the border cells (edge replication), nothing outside the box.
  inside = (pixel[None, :] >= starts[:, None]) & (pixel[None, :] < ends[:, None])
  weights = weights / jnp.maximum(weights.sum(-1, keepdims=True), 1e-6)
  return jnp.where(inside[:, :, None], weights, 0.0)


def paste_instances(
  boxes: jnp.ndarray,
  mask_probs: jnp.ndarray,
  scores: jnp.ndarray,
  valid: jnp.ndarray,
  image_size: tuple[int, int],
  mask_threshold: float = 0.5,
  min_visible: float = 0.5,
  min_area: int = 0,
) -> jnp.ndarray:
  """Instance ids `[H, W]` int32 (0 = none; detection d is id d + 1) of one image.

  Each mask `mask_probs[d]: [M, M]` is resampled bilinearly into its box (two small matrix
  products) and thresholded. Overlaps are resolved as the panoptic merge of Kirillov et al.
  (Detectron2's `overlap_threshold`): by descending score, a detection takes its pixels not yet
  taken, and is dropped when that is less than `min_visible` of its mask — otherwise a duplicate
  of a better detection would survive as a sliver along its edge — or than `min_area` pixels.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.detection.paste import paste_instances
    >>> boxes = jnp.array([[0., 0., 4., 4.], [2., 2., 8., 8.]])
    >>> ids = paste_instances(boxes, jnp.ones((2, 7, 7)), jnp.array([0.9, 0.8]),
    ...                       jnp.array([True, True]), (8, 8))
    >>> ids[0, 0].item(), ids[3, 3].item(), ids[7, 7].item()
    (1, 1, 2)

  Args:
    boxes: `[D, 4]` `(y1, x1, y2, x2)` pixels.
    mask_probs: `[D, M, M]` foreground probabilities in the box frame.
    scores: `[D]`.
    valid: `[D]` bool.
    image_size: `(H, W)`.
    mask_threshold: probability above which a pixel belongs to the detection.
    min_visible: the share of its mask a detection must keep after better ones (else dropped).
    min_area: the pixels a detection must keep (else dropped).
  """
  height, width = image_size
  size = mask_probs.shape[-1]
  rows = _resampling_matrix(boxes[:, 0], boxes[:, 2], height, size)
  cols = _resampling_matrix(boxes[:, 1], boxes[:, 3], width, size)
  pasted = jnp.einsum("dhi,dij,dwj->dhw", rows, mask_probs.astype(jnp.float32), cols)
  covered = (pasted >= mask_threshold) & valid[:, None, None]
  order = jnp.argsort(jnp.where(valid, -scores, jnp.inf))

  def take(ids, d):
    mine = covered[d] & (ids == 0)
    area = jnp.sum(covered[d])
    visible = jnp.sum(mine)
    keep = (area > 0) & (visible >= min_visible * area) & (visible >= min_area)
    return jnp.where(mine & keep, d + 1, ids), None

  ids, _ = jax.lax.scan(take, jnp.zeros((height, width), jnp.int32), order)
  return ids
