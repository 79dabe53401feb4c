"""Tests of mlsup_jax.metrics.segmentation against independent computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn import metrics as skm

from mlsup_jax.metrics import segmentation as seg


def _random_pair(rng: np.random.Generator, shape: tuple[int, ...], p: float = 0.3):
  pred = rng.random(shape) < p
  target = rng.random(shape) < p
  pred.flat[0] = target.flat[-1] = True  # never empty
  return pred, target


def _brute_surface_coords(mask: np.ndarray) -> np.ndarray:
  """`[M, ndim]` indices of mask voxels with a face neighbour outside the mask or the image."""
  coords = []
  for idx in itertools.product(*(range(n) for n in mask.shape)):
    if not mask[idx]:
      continue
    for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
      nb = list(idx)
      nb[axis] += step
      if not 0 <= nb[axis] < mask.shape[axis] or not mask[tuple(nb)]:
        coords.append(idx)
        break
  return np.array(coords, dtype=np.float64)


def _brute_distances(pred, target, spacing):
  sp = _brute_surface_coords(pred) * np.asarray(spacing)
  st = _brute_surface_coords(target) * np.asarray(spacing)
  d = cdist(sp, st)
  return d.min(axis=1), d.min(axis=0)


def test_hand_case_overlap():
  pred = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]])
  target = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1]])
  # tp = 2, fp = 1, fn = 2, tn = 4.
  assert seg.confusion_counts(pred, target) == (2, 1, 2, 4)
  assert seg.dice(pred, target) == pytest.approx(4 / 7)
  assert seg.f1(pred, target) == pytest.approx(4 / 7)
  assert seg.iou(pred, target) == pytest.approx(2 / 5)
  assert seg.precision(pred, target) == pytest.approx(2 / 3)
  assert seg.recall(pred, target) == pytest.approx(2 / 4)
  assert seg.accuracy(pred, target) == pytest.approx(6 / 9)


@pytest.mark.parametrize("shape", [(17, 23), (6, 7, 8)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overlap_matches_sklearn(shape, seed):
  pred, target = _random_pair(np.random.default_rng(seed), shape)
  y_true, y_pred = target.ravel(), pred.ravel()
  assert seg.dice(pred, target) == pytest.approx(skm.f1_score(y_true, y_pred))
  assert seg.f1(pred, target) == pytest.approx(skm.f1_score(y_true, y_pred))
  assert seg.iou(pred, target) == pytest.approx(skm.jaccard_score(y_true, y_pred))
  assert seg.precision(pred, target) == pytest.approx(skm.precision_score(y_true, y_pred))
  assert seg.recall(pred, target) == pytest.approx(skm.recall_score(y_true, y_pred))
  assert seg.accuracy(pred, target) == pytest.approx(skm.accuracy_score(y_true, y_pred))
  tn, fp, fn, tp = skm.confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
  assert seg.confusion_counts(pred.astype(np.uint8), target.astype(int)) == (tp, fp, fn, tn)


def test_single_pixels_three_apart():
  pred, target = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
  pred[2, 2], target[2, 5] = True, True
  assert seg.hd95(pred, target) == pytest.approx(3.0)
  assert seg.asd(pred, target) == pytest.approx(3.0)
  assert seg.hd95(pred, target, spacing=(2.0, 0.5)) == pytest.approx(1.5)
  assert seg.asd(pred, target, spacing=0.5) == pytest.approx(1.5)
  assert seg.hd95(pred.T, target.T, spacing=(2.0, 0.5)) == pytest.approx(6.0)


def test_asd_pools_both_directions():
  # pred: one pixel at (0, 0); target: pixels at (0, 0) and (0, 4).
  pred, target = np.zeros((5, 5), bool), np.zeros((5, 5), bool)
  pred[0, 0] = target[0, 0] = target[0, 4] = True
  # pred->target: [0]; target->pred: [0, 4]; pooled mean = 4/3 (mean of means would be 1).
  assert seg.asd(pred, target) == pytest.approx(4 / 3)
  # Directed 95th percentiles: 0 and percentile([0, 4], 95) = 3.8.
  assert seg.hd95(pred, target) == pytest.approx(3.8)


@pytest.mark.parametrize(
  "shape,spacing",
  [
    ((12, 15), None),
    ((12, 15), (0.7, 2.3)),
    ((7, 8, 9), None),
    ((7, 8, 9), (3.0, 0.8, 1.1)),
  ],
)
@pytest.mark.parametrize("density", [0.15, 0.6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distances_match_brute_force(shape, spacing, density, seed):
  rng = np.random.default_rng(seed)
  pred, target = _random_pair(rng, shape, p=density)
  d_pt, d_tp = _brute_distances(pred, target, spacing if spacing else 1.0)
  want_hd95 = max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
  want_asd = np.concatenate([d_pt, d_tp]).mean()
  assert seg.hd95(pred, target, spacing) == pytest.approx(want_hd95)
  assert seg.asd(pred, target, spacing) == pytest.approx(want_asd)


def test_distances_of_solid_blobs_3d():
  pred, target = np.zeros((10, 12, 14), bool), np.zeros((10, 12, 14), bool)
  pred[2:7, 3:9, 4:10] = True
  target[3:8, 3:9, 5:12] = True
  for spacing in (None, (2.5, 1.0, 0.6)):
    d_pt, d_tp = _brute_distances(pred, target, spacing if spacing else 1.0)
    assert seg.hd95(pred, target, spacing) == pytest.approx(
      max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
    )
    assert seg.asd(pred, target, spacing) == pytest.approx(np.concatenate([d_pt, d_tp]).mean())
  assert seg.hd95(pred, pred) == 0.0 and seg.asd(pred, pred) == 0.0


def _ball(shape, center, radius_sq):
  grid = np.indices(shape).astype(float)
  return ((grid - np.asarray(center, float).reshape(-1, *[1] * len(shape))) ** 2).sum(
    0
  ) <= radius_sq


@pytest.mark.parametrize("spacing", [None, (0.5, 1.5, 2.0)])
def test_distances_of_balls_touching_border(spacing):
  # Round shapes tell face- from full-connectivity surfaces apart; shapes cut by the image border
  # check that the border counts as background.
  pred = _ball((9, 10, 11), (4, 4, 0), 12)
  target = _ball((9, 10, 11), (5, 6, 3), 10)
  cases = [(pred, target, spacing), (pred[:, :, 0], target[:, :, 0], spacing and spacing[:2])]
  for p, t, sp in cases:
    d_pt, d_tp = _brute_distances(p, t, sp if sp else 1.0)
    want_hd95 = max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
    assert seg.hd95(p, t, sp) == pytest.approx(want_hd95)
    assert seg.asd(p, t, sp) == pytest.approx(np.concatenate([d_pt, d_tp]).mean())


def test_empty_mask_conventions():
  empty, full = np.zeros((4, 5), bool), np.zeros((4, 5), bool)
  full[1:3, 1:4] = True
  both_empty = seg.segmentation_report(empty, empty)
  assert both_empty == {
    "dice": 1.0,
    "iou": 1.0,
    "precision": 1.0,
    "recall": 1.0,
    "f1": 1.0,
    "accuracy": 1.0,
    "hd95": 0.0,
    "hd": 0.0,
    "asd": 0.0,
  }
  for pred, target in ((empty, full), (full, empty)):
    r = seg.segmentation_report(pred, target, spacing=(1.0, 2.0))
    assert r["dice"] == r["iou"] == r["f1"] == r["precision"] == r["recall"] == 0.0
    assert r["hd95"] == r["hd"] == r["asd"] == float("inf")
    assert r["accuracy"] == pytest.approx(14 / 20)
    assert not any(np.isnan(v) for v in r.values())


def test_segmentation_report_3d_matches_functions():
  pred, target = _random_pair(np.random.default_rng(5), (5, 6, 7))
  r = seg.segmentation_report(pred, target, spacing=(2.0, 1.0, 1.0))
  assert set(r) == {"dice", "iou", "precision", "recall", "f1", "accuracy", "hd95", "hd", "asd"}
  assert r["dice"] == seg.dice(pred, target)
  assert r["hd95"] == seg.hd95(pred, target, (2.0, 1.0, 1.0))
  assert r["asd"] == seg.asd(pred, target, (2.0, 1.0, 1.0))
  assert r["hd"] == seg.hausdorff(pred, target, (2.0, 1.0, 1.0))


def test_per_class_dice():
  rng = np.random.default_rng(0)
  pred = rng.integers(0, 3, size=(9, 11))
  target = rng.integers(0, 3, size=(9, 11))
  want = skm.f1_score(target.ravel(), pred.ravel(), labels=[0, 1, 2], average=None)
  got = seg.per_class_dice(pred, target, num_classes=4, include_background=True)
  assert got.shape == (4,)
  np.testing.assert_allclose(got[:3], want)
  assert got[3] == 1.0  # absent from both maps
  np.testing.assert_allclose(seg.per_class_dice(pred, target, 4), got[1:])
  with pytest.raises(ValueError):
    seg.per_class_dice(pred, target, num_classes=2)


def test_summarize():
  s = seg.summarize([1.0, 3.0, float("inf"), 2.0])
  assert s == {"mean": 2.0, "std": pytest.approx(np.std([1.0, 3.0, 2.0])), "n": 3, "n_inf": 1}
  assert seg.summarize([float("inf")]) == {
    "mean": float("inf"),
    "std": float("inf"),
    "n": 0,
    "n_inf": 1,
  }
  with pytest.raises(ValueError):
    seg.summarize([1.0, float("nan")])


def test_input_validation():
  with pytest.raises(ValueError):
    seg.dice(np.zeros((3, 3)), np.zeros((3, 4)))
  with pytest.raises(ValueError):
    seg.dice(np.full((3, 3), 0.7), np.zeros((3, 3)))
  with pytest.raises(ValueError):
    seg.hd95(np.ones((3, 3)), np.ones((3, 3)), spacing=(1.0, 0.0))
  with pytest.raises(ValueError):
    seg.hd95(np.ones((3, 3)), np.ones((3, 3)), spacing=(1.0, 1.0, 1.0))
