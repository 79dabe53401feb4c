"""Anchors of a feature pyramid: one size per level, several aspect ratios (Matterport's FPN)."""

from __future__ import annotations

import numpy as np


def pyramid_anchors(
  image_size: tuple[int, int],
  strides=(4, 8, 16, 32, 64),
  sizes=(8, 16, 32, 64, 128),
  ratios=(0.5, 1.0, 2.0),
) -> np.ndarray:
  """All anchors `[N, 4]` float32 `(y1, x1, y2, x2)`, level by level, then row, column, ratio.

  The order matches an RPN head's outputs flattened per level as `[H_l, W_l, A]` and the levels
  concatenated. A ratio is height / width; every anchor of a level has the area `size²`.

  Example:
    >>> from mlsup_jax.detection.anchors import pyramid_anchors
    >>> pyramid_anchors((64, 64)).shape  # 3 ratios × (16² + 8² + 4² + 2² + 1²)
    (1023, 4)
  """
  if len(strides) != len(sizes):
    raise ValueError(f"one anchor size per level: {len(strides)} strides, {len(sizes)} sizes.")
  height, width = image_size
  levels = []
  ratios = np.asarray(ratios, np.float64)
  for stride, size in zip(strides, sizes, strict=True):
    rows, cols = -(-height // stride), -(-width // stride)
    cy = (np.arange(rows) + 0.5) * stride
    cx = (np.arange(cols) + 0.5) * stride
    h = size * np.sqrt(ratios)
    w = size / np.sqrt(ratios)
    cy, cx = np.meshgrid(cy, cx, indexing="ij")
    cy, cx = cy[..., None], cx[..., None]
    boxes = np.stack(
      np.broadcast_arrays(cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2), axis=-1
    )  # [rows, cols, A, 4]
    levels.append(boxes.reshape(-1, 4))
  return np.concatenate(levels).astype(np.float32)
