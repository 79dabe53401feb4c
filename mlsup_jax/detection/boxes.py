"""Box arithmetic: IoU, the Faster R-CNN delta encoding, clipping. Boxes are `(y1, x1, y2, x2)`."""

from __future__ import annotations

import jax.numpy as jnp

# Matterport's RPN_BBOX_STD_DEV / BBOX_STD_DEV: deltas are divided by these so that their
# regression targets have roughly unit scale.
DELTA_STD = (0.1, 0.1, 0.2, 0.2)
# exp(dh) is clipped here (log(1000 / 16), torchvision's bound) so an untrained head cannot
# produce infinite boxes.
MAX_LOG_SCALE = 4.135


def box_iou(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """IoU of every box of `a: [N, 4]` with every box of `b: [M, 4]` → `[N, M]` (0 for empty boxes).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.detection.boxes import box_iou
    >>> float(box_iou(jnp.array([[0., 0., 2., 2.]]), jnp.array([[1., 0., 3., 2.]]))[0, 0])
    0.3333333432674408
  """
  top = jnp.maximum(a[:, None, 0], b[None, :, 0])
  left = jnp.maximum(a[:, None, 1], b[None, :, 1])
  bottom = jnp.minimum(a[:, None, 2], b[None, :, 2])
  right = jnp.minimum(a[:, None, 3], b[None, :, 3])
  inter = jnp.clip(bottom - top, 0) * jnp.clip(right - left, 0)
  area_a = jnp.clip(a[:, 2] - a[:, 0], 0) * jnp.clip(a[:, 3] - a[:, 1], 0)
  area_b = jnp.clip(b[:, 2] - b[:, 0], 0) * jnp.clip(b[:, 3] - b[:, 1], 0)
  union = area_a[:, None] + area_b[None, :] - inter
  return jnp.where(union > 0, inter / jnp.maximum(union, 1e-9), 0.0)


def _centres(boxes):
  height = boxes[..., 2] - boxes[..., 0]
  width = boxes[..., 3] - boxes[..., 1]
  return boxes[..., 0] + 0.5 * height, boxes[..., 1] + 0.5 * width, height, width


def encode(boxes: jnp.ndarray, references: jnp.ndarray, std=DELTA_STD) -> jnp.ndarray:
  """Deltas `[..., 4]` = `(dy, dx, log h, log w)` of `boxes` relative to `references`, / `std`.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.detection.boxes import decode, encode
    >>> ref, box = jnp.array([[0., 0., 4., 4.]]), jnp.array([[1., 1., 3., 7.]])
    >>> bool(jnp.allclose(decode(encode(box, ref), ref), box, atol=1e-5))
    True
  """
  cy, cx, h, w = _centres(references)
  gy, gx, gh, gw = _centres(boxes)
  h, w = jnp.maximum(h, 1e-6), jnp.maximum(w, 1e-6)
  deltas = jnp.stack(
    [
      (gy - cy) / h,
      (gx - cx) / w,
      jnp.log(jnp.maximum(gh, 1e-6) / h),
      jnp.log(jnp.maximum(gw, 1e-6) / w),
    ],
    axis=-1,
  )
  return deltas / jnp.asarray(std, deltas.dtype)


def decode(deltas: jnp.ndarray, references: jnp.ndarray, std=DELTA_STD) -> jnp.ndarray:
  """Boxes `[..., 4]` from `deltas` relative to `references` (the inverse of `encode`)."""
  deltas = deltas.astype(jnp.float32) * jnp.asarray(std, jnp.float32)
  cy, cx, h, w = _centres(references)
  cy, cx = cy + deltas[..., 0] * h, cx + deltas[..., 1] * w
  h = h * jnp.exp(jnp.minimum(deltas[..., 2], MAX_LOG_SCALE))
  w = w * jnp.exp(jnp.minimum(deltas[..., 3], MAX_LOG_SCALE))
  return jnp.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


def clip_boxes(boxes: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
  """Boxes `[..., 4]` clipped to the image `[0, height] × [0, width]`."""
  limits = jnp.asarray([height, width, height, width], boxes.dtype)
  return jnp.clip(boxes, 0.0, limits)
