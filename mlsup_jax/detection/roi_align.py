"""RoIAlign by bilinear sampling (He et al. 2017), over one map or a feature pyramid.

Each box is divided into `output_size²` bins; `sampling²` points per bin are read by bilinear
interpolation (pixel centres at half-integers: torchvision's `aligned=True`) and averaged. Boxes
are in image pixels; a level of stride s reads at `box / s`. The pyramid version picks each box's
level by Eq. 1 of the FPN paper, `k = ⌊k0 + log2(√(hw) / canonical)⌋` clipped to the levels, and
gathers from all levels flattened into one array, so the shapes stay fixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np


def _sample_points(boxes, scale, output_size: int, sampling: int):
  """Sample coordinates `[R, n]` (rows) and `[R, n]` (columns) in a map's pixel units."""
  offsets = (np.arange(output_size * sampling, dtype=np.float32) + 0.5) / sampling
  y1, x1 = boxes[:, 0] * scale, boxes[:, 1] * scale
  bin_h = (boxes[:, 2] - boxes[:, 0]) * scale / output_size
  bin_w = (boxes[:, 3] - boxes[:, 1]) * scale / output_size
  ys = y1[:, None] + offsets[None, :] * bin_h[:, None] - 0.5
  xs = x1[:, None] + offsets[None, :] * bin_w[:, None] - 0.5
  return ys, xs


def _bilinear(flat, offset, height, width, ys, xs):
  """Values `[R, ny, nx, C]` of the map stored at `flat[offset : offset + height·width]`.

  `offset`, `height`, `width`: `[R]` (per box: its level). Points outside the map read zeros,
  points within half a pixel of the border read the border (torchvision's convention).
  """
  inside = (
    (ys[:, :, None] > -1.0)
    & (ys[:, :, None] < height[:, None, None])
    & (xs[:, None, :] > -1.0)
    & (xs[:, None, :] < width[:, None, None])
  )
  hmax = (height - 1)[:, None].astype(ys.dtype)
  wmax = (width - 1)[:, None].astype(xs.dtype)
  ys, xs = jnp.clip(ys, 0.0, hmax), jnp.clip(xs, 0.0, wmax)
  y0, x0 = jnp.floor(ys), jnp.floor(xs)
  y1, x1 = jnp.minimum(y0 + 1, hmax), jnp.minimum(x0 + 1, wmax)
  wy, wx = ys - y0, xs - x0

  def read(yi, xi):
    index = offset[:, None, None] + yi.astype(jnp.int32)[:, :, None] * width[:, None, None]
    index = index + xi.astype(jnp.int32)[:, None, :]
    return flat[index]  # [R, ny, nx, C]

  top = read(y0, x0) * (1 - wx)[:, None, :, None] + read(y0, x1) * wx[:, None, :, None]
  bottom = read(y1, x0) * (1 - wx)[:, None, :, None] + read(y1, x1) * wx[:, None, :, None]
  values = top * (1 - wy)[:, :, None, None] + bottom * wy[:, :, None, None]
  return jnp.where(inside[..., None], values, 0.0)


def roi_align(
  features: jnp.ndarray, boxes: jnp.ndarray, stride: float, output_size: int, sampling: int = 2
) -> jnp.ndarray:
  """RoIAlign of `boxes: [R, 4]` (image pixels) on one map `features: [H, W, C]` of `stride`.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.detection.roi_align import roi_align
    >>> ramp = jnp.arange(16.0).reshape(4, 4, 1)
    >>> roi_align(ramp, jnp.array([[0., 0., 4., 4.]]), 1.0, 2)[0, :, :, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]

  Returns:
    `[R, output_size, output_size, C]`.
  """
  height, width, channels = features.shape
  count = boxes.shape[0]
  ys, xs = _sample_points(boxes, 1.0 / stride, output_size, sampling)
  shape = jnp.full((count,), 1, jnp.int32)
  values = _bilinear(
    features.reshape(-1, channels),
    jnp.zeros((count,), jnp.int32),
    shape * height,
    shape * width,
    ys,
    xs,
  )
  return _bin_means(values, output_size, sampling)


def _bin_means(values, output_size, sampling):
  count, channels = values.shape[0], values.shape[-1]
  values = values.reshape(count, output_size, sampling, output_size, sampling, channels)
  return values.mean(axis=(2, 4))


def pyramid_levels(
  boxes: jnp.ndarray, num_levels: int, k0: int = 4, canonical: float = 224.0, first_level: int = 2
) -> jnp.ndarray:
  """Each box's pyramid index `[R]` in `0 … num_levels − 1` (FPN Eq. 1, level 2 = index 0)."""
  area = jnp.clip(boxes[:, 2] - boxes[:, 0], 1e-6) * jnp.clip(boxes[:, 3] - boxes[:, 1], 1e-6)
  level = jnp.floor(k0 + jnp.log2(jnp.sqrt(area) / canonical))
  return (jnp.clip(level, first_level, first_level + num_levels - 1) - first_level).astype(
    jnp.int32
  )


def pyramid_roi_align(
  levels: Sequence[jnp.ndarray],
  strides: Sequence[float],
  boxes: jnp.ndarray,
  output_size: int,
  sampling: int = 2,
  canonical: float = 224.0,
) -> jnp.ndarray:
  """RoIAlign of `boxes: [R, 4]` on the level FPN assigns each (`levels[l]: [H_l, W_l, C]`).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.detection.roi_align import pyramid_roi_align, roi_align
    >>> p2, p3 = jnp.ones((16, 16, 2)), 2 * jnp.ones((8, 8, 2))
    >>> small, large = jnp.array([[0., 0., 8., 8.]]), jnp.array([[0., 0., 60., 60.]])
    >>> float(pyramid_roi_align([p2, p3], [4, 8], small, 2, canonical=56.0)[0, 0, 0, 0])
    1.0
    >>> float(pyramid_roi_align([p2, p3], [4, 8], large, 2, canonical=56.0)[0, 0, 0, 0])
    2.0

  Returns:
    `[R, output_size, output_size, C]`.
  """
  channels = levels[0].shape[-1]
  flat = jnp.concatenate([level.reshape(-1, channels) for level in levels])
  sizes = np.array([level.shape[0] * level.shape[1] for level in levels])
  offsets = jnp.asarray(np.concatenate([[0], np.cumsum(sizes)[:-1]]), jnp.int32)
  heights = jnp.asarray([level.shape[0] for level in levels], jnp.int32)
  widths = jnp.asarray([level.shape[1] for level in levels], jnp.int32)
  scales = jnp.asarray([1.0 / s for s in strides], jnp.float32)
  index = pyramid_levels(boxes, len(levels), canonical=canonical)
  ys, xs = _sample_points(boxes, scales[index], output_size, sampling)
  values = _bilinear(flat, offsets[index], heights[index], widths[index], ys, xs)
  return _bin_means(values, output_size, sampling)
