"""Instance metrics against hand-computed cases: matching, P/R/F1, PQ, AJI, Hausdorff, the
thesis's definitions, empty images, non-square masks and bad input."""

import numpy as np
import pytest

from mlsup_jax.metrics.instances import instance_report, match_instances, thesis_metrics


def _two_objects():
  ref = np.zeros((6, 8), int)  # non-square on purpose (the thesis's code assumes squares)
  ref[0:2, 0:2] = 1  # 4 px
  ref[3:6, 4:8] = 2  # 12 px
  return ref


def test_a_split_object_counts_one_match_and_the_rest_as_false_positives():
  ref = _two_objects()
  pred = np.zeros_like(ref)
  pred[0:2, 0:2] = 7  # exact
  pred[3:6, 4:6] = 3  # left half of object 2: IoU 6 / 12 = 0.5 → a match
  pred[3:6, 6:8] = 4  # right half: IoU 0.5 too, but object 2 is taken
  r = instance_report(pred, ref)
  assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 0)
  assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == 1.0
  assert r["f1"] == pytest.approx(2 * 2 / (3 + 2))
  assert r["mean_matched_iou"] == pytest.approx((1.0 + 0.5) / 2)
  assert r["pq"] == pytest.approx((1.0 + 0.5) / (2 + 0.5))
  # AJI: object 1 ↔ 7 (4 / 4); object 2 ↔ its best, the first half (6 / 12); the unused half
  # adds its 6 px to the union: (4 + 6) / (4 + 12 + 6).
  assert r["aji"] == pytest.approx(10 / 22)
  # Hausdorff of the matches: 0 for the exact one; the half-object's farthest reference pixel
  # is 2 columns from it.
  assert r["hausdorff"] == pytest.approx((0.0 + 2.0) / 2)


def test_the_assignment_is_one_to_one_and_maximises_iou():
  ref = np.zeros((1, 10), int)
  ref[0, 0:4] = 1
  ref[0, 4:10] = 2
  pred = np.zeros_like(ref)
  pred[0, 0:6] = 1  # IoU with 1: 4/6; with 2: 2/10
  pred[0, 6:10] = 2  # IoU with 2: 4/6
  matches = match_instances(pred, ref)
  assert [(p, r) for p, r, _ in matches] == [(0, 0), (1, 1)]
  assert instance_report(pred, ref, iou_threshold=0.7)["tp"] == 0


def test_empty_images():
  empty = np.zeros((4, 5), int)
  both = instance_report(empty, empty)
  assert both["f1"] == 1.0 and both["aji"] == 1.0 and both["pq"] == 1.0
  ref = _two_objects()
  missed = instance_report(np.zeros_like(ref), ref)
  assert missed["f1"] == 0.0 and missed["recall"] == 0.0 and missed["aji"] == 0.0
  assert np.isnan(missed["mean_matched_iou"]) and np.isnan(missed["hausdorff"])
  assert np.isnan(thesis_metrics(np.zeros_like(ref), ref)["ap"])


def test_thesis_definitions_by_hand():
  ref = _two_objects()
  pred = np.zeros_like(ref)
  pred[0:2, 0:2] = 1  # IoU 1
  pred[3:6, 4:6] = 2  # IoU 0.5 with object 2
  pred[3:6, 6:8] = 3  # IoU 0.5 with object 2 again: a TP here (no one-to-one constraint)
  r = thesis_metrics(pred, ref)
  # cumulative precision [1, 1, 1], recall [0.5, 1, 1.5]; padded [0, 1, 1, 1, 0], [0, .5, 1, 1.5, 1]
  assert r["precision"] == pytest.approx(3 / 5)
  assert r["recall"] == pytest.approx(4 / 5)
  assert r["f1"] == pytest.approx(2 * 0.6 * 0.8 / 1.4)
  assert r["jaccard"] == pytest.approx(2.0 / 5)
  assert r["ap"] > 0.99  # every prediction is a hit: the envelope is 1 up to recall 1


def test_bad_input_is_a_clear_error():
  with pytest.raises(ValueError, match="differ in shape"):
    instance_report(np.zeros((2, 2), int), np.zeros((2, 3), int))
  with pytest.raises(ValueError, match="must be integers"):
    instance_report(np.zeros((2, 2)), np.zeros((2, 2)))
