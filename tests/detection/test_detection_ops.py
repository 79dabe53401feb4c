"""The static-shape detection blocks against plain numpy references and hand-computed cases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.measure import regionprops

from mlsup_jax.detection import targets
from mlsup_jax.detection.anchors import pyramid_anchors
from mlsup_jax.detection.boxes import box_iou, decode, encode
from mlsup_jax.detection.nms import nms
from mlsup_jax.detection.paste import paste_instances
from mlsup_jax.detection.roi_align import pyramid_levels, pyramid_roi_align, roi_align
from mlsup_jax.losses import detection as detection_losses


def _random_boxes(rng, count, size=64.0):
  corner = rng.uniform(0, size - 8, (count, 2))
  extent = rng.uniform(2, 24, (count, 2))
  return np.concatenate([corner, corner + extent], 1).astype(np.float32)


def _greedy_nms(boxes, scores, threshold):
  """The textbook loop."""
  order, kept = list(np.argsort(-scores, kind="stable")), []
  iou = np.asarray(box_iou(jnp.asarray(boxes), jnp.asarray(boxes)))
  while order:
    i = order.pop(0)
    kept.append(i)
    order = [j for j in order if iou[i, j] <= threshold]
  return kept


def test_iou_and_delta_round_trip():
  a = jnp.array([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
  b = jnp.array([[2.0, 2.0, 6.0, 6.0]])
  np.testing.assert_allclose(np.asarray(box_iou(a, b)), [[4 / 28], [0.0]], rtol=1e-6)
  rng = np.random.default_rng(0)
  refs, boxes = _random_boxes(rng, 50), _random_boxes(rng, 50)
  back = decode(encode(jnp.asarray(boxes), jnp.asarray(refs)), jnp.asarray(refs))
  np.testing.assert_allclose(np.asarray(back), boxes, atol=1e-3)


def test_anchor_order_matches_a_level_major_row_major_layout():
  anchors = pyramid_anchors((64, 32), strides=(4, 8), sizes=(8, 16), ratios=(1.0,))
  assert anchors.shape == (16 * 8 + 8 * 4, 4)
  # Level 0, row 1, column 2: centre (6, 10), side 8.
  np.testing.assert_allclose(anchors[1 * 8 + 2], [2, 6, 10, 14])
  # Level 1 starts after level 0; its first anchor is centred at (4, 4) with side 16.
  np.testing.assert_allclose(anchors[128], [-4, -4, 12, 12])


@pytest.mark.parametrize("seed", [0, 1])
def test_nms_equals_the_greedy_loop(seed):
  rng = np.random.default_rng(seed)
  boxes = _random_boxes(rng, 60, size=40.0)
  scores = rng.uniform(size=60).astype(np.float32)
  valid = rng.uniform(size=60) > 0.2
  index, kept = nms(jnp.asarray(boxes), jnp.asarray(scores), jnp.asarray(valid), 0.4, 80)
  reference = np.flatnonzero(valid)[_greedy_nms(boxes[valid], scores[valid], 0.4)]
  assert np.asarray(index)[np.asarray(kept)].tolist() == reference.tolist()
  # Fewer outputs than survivors: the best ones, in order.
  index, kept = nms(jnp.asarray(boxes), jnp.asarray(scores), jnp.asarray(valid), 0.4, 5)
  assert np.asarray(index).tolist() == reference[:5].tolist() and bool(np.all(kept))


def _numpy_roi_align(feature, box, stride, out, sampling):
  """One box, point by point (torchvision's aligned RoIAlign)."""
  height, width, _ = feature.shape
  y1, x1, y2, x2 = np.asarray(box) / stride
  bin_h, bin_w = (y2 - y1) / out, (x2 - x1) / out
  result = np.zeros((out, out, feature.shape[-1]))
  for i in range(out):
    for j in range(out):
      for si in range(sampling):
        for sj in range(sampling):
          y = y1 + (i + (si + 0.5) / sampling) * bin_h - 0.5
          x = x1 + (j + (sj + 0.5) / sampling) * bin_w - 0.5
          if y <= -1 or y >= height or x <= -1 or x >= width:
            continue
          y, x = min(max(y, 0), height - 1), min(max(x, 0), width - 1)
          y0, x0 = int(np.floor(y)), int(np.floor(x))
          yb, xb = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
          wy, wx = y - y0, x - x0
          value = (
            feature[y0, x0] * (1 - wy) * (1 - wx)
            + feature[y0, xb] * (1 - wy) * wx
            + feature[yb, x0] * wy * (1 - wx)
            + feature[yb, xb] * wy * wx
          )
          result[i, j] += value / sampling**2
  return result


def test_roi_align_matches_a_pointwise_reference_and_picks_fpn_levels():
  rng = np.random.default_rng(0)
  feature = rng.normal(size=(16, 12, 3)).astype(np.float32)
  boxes = np.concatenate([_random_boxes(rng, 6, 40.0), [[-6.0, -6.0, 20.0, 70.0]]]).astype(
    np.float32
  )
  got = np.asarray(roi_align(jnp.asarray(feature), jnp.asarray(boxes), 4.0, 3, 2))
  for box, value in zip(boxes, got, strict=True):
    np.testing.assert_allclose(value, _numpy_roi_align(feature, box, 4.0, 3, 2), atol=1e-5)
  # FPN Eq. 1 with k0 = 4, canonical 224: a 224-px box goes to P4, 112 to P3, tiny ones to P2.
  sides = jnp.array([[0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 8, 8], [0, 0, 2000, 2000.0]])
  assert pyramid_levels(sides, 4).tolist() == [2, 1, 0, 3]
  levels = [jnp.asarray(rng.normal(size=(32 // s, 32 // s, 2)), jnp.float32) for s in (1, 2)]
  pooled = pyramid_roi_align(levels, (1, 2), jnp.asarray(boxes[:3]), 2, canonical=16.0)
  index = np.asarray(pyramid_levels(jnp.asarray(boxes[:3]), 2, canonical=16.0))
  for r, level in enumerate(index):
    expected = roi_align(levels[level], jnp.asarray(boxes[r : r + 1]), (1, 2)[level], 2)[0]
    np.testing.assert_allclose(np.asarray(pooled[r]), np.asarray(expected), atol=1e-5)


def test_instance_boxes_equal_regionprops_and_ignore_ids_beyond_the_cap():
  label = np.zeros((40, 50), np.int32)
  label[3:9, 4:20] = 1
  label[20:38, 30:33] = 2
  label[10, 45] = 3
  label[30:35, 2:6] = 5  # Beyond the cap of 4 objects: ignored.
  boxes, valid = targets.instance_boxes(jnp.asarray(label), 4)
  assert np.asarray(valid).tolist() == [True, True, True, False]
  for region in regionprops(label):
    if region.label <= 3:
      np.testing.assert_allclose(np.asarray(boxes[region.label - 1]), region.bbox)


def test_rpn_sampling_counts_and_every_object_gets_an_anchor():
  anchors = jnp.asarray(pyramid_anchors((64, 64)))
  gt = jnp.array([[5.0, 5.0, 15.0, 13.0], [30.0, 40.0, 60.0, 62.0], [0.0, 0.0, 0.0, 0.0]])
  valid = jnp.array([True, True, False])
  out = targets.rpn_targets(jax.random.key(0), anchors, gt, valid, num=32)
  positive = np.asarray(out["positive"])
  assert 2 <= positive.sum() <= 16 and np.asarray(out["weights"]).sum() == 32
  iou = np.asarray(box_iou(anchors, gt[:2]))
  for g in range(2):
    assert positive[iou[:, g] == iou[:, g].max()].any()
  # Targets decode back to the matched object.
  match = iou.argmax(1)
  decoded = decode(out["deltas"], anchors)
  np.testing.assert_allclose(
    np.asarray(decoded)[positive], np.asarray(gt)[match[positive]], atol=1e-3
  )


def test_roi_sampling_puts_positives_first_and_includes_the_objects():
  gt = jnp.array([[5.0, 5.0, 15.0, 13.0], [30.0, 40.0, 60.0, 62.0]])
  proposals = jnp.asarray(_random_boxes(np.random.default_rng(1), 40))
  out = targets.roi_targets(
    jax.random.key(0), proposals, jnp.ones(40, bool), gt, jnp.ones(2, bool), num=16
  )
  positive = np.asarray(out["positive"])
  count = positive.sum()
  assert count >= 2 and positive[:count].all() and not positive[count:].any()
  assert count <= round(16 * 0.33) and np.asarray(out["valid"]).all()
  assert np.asarray(out["labels"]).tolist() == positive.astype(int).tolist()


def test_mask_targets_and_pasting_invert_each_other_on_boxes():
  label = np.zeros((32, 32), np.int32)
  label[4:20, 8:16] = 1
  label[22:30, 2:30] = 2
  boxes, _ = targets.instance_boxes(jnp.asarray(label), 2)
  masks = targets.mask_targets(jnp.asarray(label), boxes, jnp.array([1, 2]), 28)
  assert float(masks.min()) == 1.0  # A box's own object fills it.
  pasted = paste_instances(boxes, masks, jnp.array([0.9, 0.8]), jnp.ones(2, bool), (32, 32))
  np.testing.assert_array_equal(np.asarray(pasted), label)
  # The other object's box seen from object 1: empty.
  other = targets.mask_targets(jnp.asarray(label), boxes[1:], jnp.array([1]), 28)
  assert float(other.max()) == 0.0


def test_loss_terms_by_hand():
  out = {
    "rpn_deltas": jnp.array([[[0.5, 0.0, 2.0, 0.0], [9.0, 9.0, 9.0, 9.0]]]),
    "rpn_target_deltas": jnp.zeros((1, 2, 4)),
    "rpn_positive": jnp.array([[True, False]]),
    "roi_class_logits": jnp.array([[[0.0, 0.0], [2.0, 0.0]]]),
    "roi_labels": jnp.array([[1, 0]]),
    "roi_valid": jnp.array([[True, True]]),
    "mask_logits": jnp.zeros((1, 1, 2, 2)),
    "mask_targets": jnp.ones((1, 1, 2, 2)),
    "mask_positive": jnp.array([[True]]),
  }
  box, _ = detection_losses.rpn_box(outputs=out, batch={})
  assert float(box) == pytest.approx(0.125 + 1.5)
  cls, metrics = detection_losses.roi_class(outputs=out, batch={})
  expected = (np.log(2) + np.log(1 + np.exp(-2.0))) / 2
  assert float(cls) == pytest.approx(expected, rel=1e-5) and float(metrics["roi_accuracy"]) == 0.5
  mask, _ = detection_losses.roi_mask(outputs=out, batch={})
  assert float(mask) == pytest.approx(np.log(2), rel=1e-5)
