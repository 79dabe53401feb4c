"""Training targets of Mask R-CNN read from an instance label map, with fixed shapes.

The data stay what every segmentation source gives (`label [H, W]`: 0 = background, 1 … G one
object each), so flips, rotations and crops apply to instance data unchanged; the boxes and the
mask targets are computed in the jitted step:

* `instance_boxes`: each id's tight box (segment min / max of its pixel coordinates);
* `rpn_targets`: anchors labelled positive (IoU ≥ 0.7 with an object, or an object's best
  anchor), negative (IoU < 0.3) or ignored, then `num` of them sampled with at most half
  positive (Faster R-CNN);
* `roi_targets`: proposals (plus the ground-truth boxes, as Detectron and Matterport add them)
  labelled positive at IoU ≥ 0.5, `num` sampled with at most `positive_fraction` positive —
  positives first, so the mask branch can read the first `⌈num · positive_fraction⌉` rows only;
* `mask_targets`: the matched object's indicator sampled bilinearly at the RoI's mask grid
  (torchvision's `roi_align` of the ground-truth mask into the proposal), binarised at 0.5.

Sampling without replacement with a fixed output size: every candidate draws a uniform key, and
the `n` smallest keys among the eligible win (`_sample_mask`), which is uniform sampling.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlsup_jax.detection.boxes import box_iou, encode


def instance_boxes(label: jnp.ndarray, max_instances: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """`(boxes [G, 4], valid [G])` of ids 1 … G = `max_instances` in `label: [H, W]`.

  Boxes are `(y1, x1, y2, x2)` with exclusive ends (a one-pixel object at (3, 4) is
  `(3, 4, 4, 5)`); ids above G are ignored, absent ids are invalid.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.detection.targets import instance_boxes
    >>> label = jnp.zeros((6, 6), jnp.int32).at[1:3, 2:5].set(1)
    >>> boxes, valid = instance_boxes(label, 2)
    >>> boxes[0].tolist(), valid.tolist()
    ([1.0, 2.0, 3.0, 5.0], [True, False])
  """
  height, width = label.shape
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
  ids = label.reshape(-1)
  ids = jnp.where((ids > 0) & (ids <= max_instances), ids, 0)
  segments = max_instances + 1
  y1 = jax.ops.segment_min(rows.reshape(-1), ids, segments)[1:]
  x1 = jax.ops.segment_min(cols.reshape(-1), ids, segments)[1:]
  y2 = jax.ops.segment_max(rows.reshape(-1), ids, segments)[1:] + 1
  x2 = jax.ops.segment_max(cols.reshape(-1), ids, segments)[1:] + 1
  count = jax.ops.segment_sum(jnp.ones_like(ids), ids, segments)[1:]
  valid = count > 0
  boxes = jnp.stack([y1, x1, y2, x2], axis=-1).astype(jnp.float32)
  return jnp.where(valid[:, None], boxes, 0.0), valid


def _sample_mask(rng, eligible: jnp.ndarray, count) -> jnp.ndarray:
  """A uniformly random subset of at most `count` of the `eligible [N]` entries, as a mask."""
  keys = jnp.where(eligible, jax.random.uniform(rng, eligible.shape), 2.0)
  rank = (
    jnp.zeros(eligible.shape, jnp.int32)
    .at[jnp.argsort(keys)]
    .set(jnp.arange(eligible.shape[0], dtype=jnp.int32))
  )
  return eligible & (rank < count)


def _sample_balanced(rng, positive, negative, max_positive: int, num: int):
  """At most `max_positive` of the positives, then negatives up to `num` in all (masks)."""
  pos_rng, neg_rng = jax.random.split(rng)
  positive = _sample_mask(pos_rng, positive, max_positive)
  return positive, _sample_mask(neg_rng, negative, num - positive.sum())


def _matches(candidates, gt_boxes, gt_valid):
  """`(best IoU [N], best object [N], IoU [N, G])` of candidates vs the valid objects."""
  iou = jnp.where(gt_valid[None, :], box_iou(candidates, gt_boxes), -1.0)
  return iou.max(axis=1), iou.argmax(axis=1), iou


def rpn_targets(
  rng: jax.Array,
  anchors: jnp.ndarray,
  gt_boxes: jnp.ndarray,
  gt_valid: jnp.ndarray,
  num: int = 256,
  positive_iou: float = 0.7,
  negative_iou: float = 0.3,
) -> dict[str, jnp.ndarray]:
  """Sampled objectness labels and box targets of the anchors (one image).

  Args:
    rng: sampling key.
    anchors: `[N, 4]`.
    gt_boxes, gt_valid: `[G, 4]`, `[G]` (`instance_boxes`).
    num: anchors sampled per image (Matterport's RPN_TRAIN_ANCHORS_PER_IMAGE), ≤ half positive.

  Returns:
    `labels [N]` (1 positive, 0 negative), `weights [N]` (1 where sampled), `deltas [N, 4]`
    (targets of the positives), `positive [N]` (sampled positives).
  """
  best, match, iou = _matches(anchors, gt_boxes, gt_valid)
  # Each object's best anchors are positive whatever their IoU (ties all count).
  best_per_object = jnp.where(gt_valid, iou.max(axis=0), 2.0)
  is_best = jnp.any((iou >= best_per_object[None, :] - 1e-6) & (iou > 0), axis=1)
  positive = (best >= positive_iou) | is_best
  negative = (best < negative_iou) & ~positive
  positive, negative = _sample_balanced(rng, positive, negative, num // 2, num)
  deltas = encode(gt_boxes[match], anchors)
  return {
    "labels": positive.astype(jnp.float32),
    "weights": (positive | negative).astype(jnp.float32),
    "deltas": jnp.where(positive[:, None], deltas, 0.0),
    "positive": positive,
  }


def roi_targets(
  rng: jax.Array,
  proposals: jnp.ndarray,
  proposal_valid: jnp.ndarray,
  gt_boxes: jnp.ndarray,
  gt_valid: jnp.ndarray,
  num: int = 128,
  positive_fraction: float = 0.33,
  positive_iou: float = 0.5,
) -> dict[str, jnp.ndarray]:
  """`num` RoIs sampled from the proposals and ground-truth boxes, positives first (one image).

  Returns:
    `boxes [num, 4]`, `labels [num]` int32 (1 object, 0 background), `valid [num]` (sampled, not
    padding), `positive [num]`, `match [num]` (the object of each RoI), `deltas [num, 4]`.
  """
  candidates = jnp.concatenate([proposals, gt_boxes])
  available = jnp.concatenate([proposal_valid, gt_valid])
  best, match, _ = _matches(candidates, gt_boxes, gt_valid)
  positive = available & (best >= positive_iou)
  negative = available & (best < positive_iou)
  positive, negative = _sample_balanced(
    rng, positive, negative, int(round(num * positive_fraction)), num
  )
  total = candidates.shape[0]
  order = jnp.arange(total)
  rank = jnp.where(positive, order, jnp.where(negative, total + order, 2 * total + order))
  take = jnp.argsort(rank)[:num]
  boxes = candidates[take]
  return {
    "boxes": boxes,
    "labels": positive[take].astype(jnp.int32),
    "valid": (positive | negative)[take],
    "positive": positive[take],
    "match": match[take],
    "deltas": jnp.where(positive[take][:, None], encode(gt_boxes[match[take]], boxes), 0.0),
  }


def mask_targets(
  label: jnp.ndarray, boxes: jnp.ndarray, object_ids: jnp.ndarray, size: int
) -> jnp.ndarray:
  """`[R, size, size]` float32 0 / 1: object `object_ids[r]`'s mask resampled into box `r`.

  Bilinear sampling of the object's indicator at the centres of the `size × size` bins of the
  box, thresholded at 0.5 (ids are label values, 1-based).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.detection.targets import mask_targets
    >>> label = jnp.zeros((8, 8), jnp.int32).at[0:4, 0:8].set(1)
    >>> mask_targets(label, jnp.array([[0., 0., 8., 8.]]), jnp.array([1]), 2)[0].tolist()
    [[1.0, 1.0], [0.0, 0.0]]
  """
  height, width = label.shape
  centres = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size
  ys = boxes[:, 0:1] + centres[None] * (boxes[:, 2:3] - boxes[:, 0:1]) - 0.5
  xs = boxes[:, 1:2] + centres[None] * (boxes[:, 3:4] - boxes[:, 1:2]) - 0.5
  ys, xs = jnp.clip(ys, 0, height - 1), jnp.clip(xs, 0, width - 1)
  y0, x0 = jnp.floor(ys), jnp.floor(xs)
  wy, wx = ys - y0, xs - x0
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
  y1, x1 = jnp.minimum(y0 + 1, height - 1), jnp.minimum(x0 + 1, width - 1)
  ids = object_ids[:, None, None]

  def read(yi, xi):
    return (label[yi[:, :, None], xi[:, None, :]] == ids).astype(jnp.float32)

  top = read(y0, x0) * (1 - wx)[:, None, :] + read(y0, x1) * wx[:, None, :]
  bottom = read(y1, x0) * (1 - wx)[:, None, :] + read(y1, x1) * wx[:, None, :]
  soft = top * (1 - wy)[:, :, None] + bottom * wy[:, :, None]
  return (soft >= 0.5).astype(jnp.float32)
