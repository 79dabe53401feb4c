"""Tests of the host-side OOD-segmentation evaluation (mlsup_jax.ood.segmentation_report).

Dice values are worked out by hand; OOD regions, AUROCs and case scores are recomputed with
brute-force numpy and sklearn.
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from mlsup_jax.ood import segmentation_report as sr

CLASS_NAMES = ("background", "liver", "hcc", "cyst", "metastasis")


def _eval_config(ood_region="lesion_dilated", region_dilation=2, case_reduce="mean"):
  return ml_collections.ConfigDict(
    {"ood_region": ood_region, "region_dilation": region_dilation, "case_reduce": case_reduce}
  )


def _np_dilate(mask, radius):
  """Per-case dilation by the L1 ball of `radius` (cross-shaped structure iterated), brute force."""
  out = np.zeros_like(mask, bool)
  for c in range(mask.shape[0]):
    points = np.argwhere(mask[c])
    if not len(points):
      continue
    grid = np.indices(mask.shape[1:]).reshape(mask.ndim - 1, -1).T  # [P, d]
    dist = np.abs(grid[:, None, :] - points[None, :, :]).sum(-1).min(1)
    out[c] = (dist <= radius).reshape(mask.shape[1:])
  return out


# ----------------------------------------------------------------------------------------------
# Inlier Dice.


def _dice_cases():
  label = np.zeros((2, 4, 4), np.int32)
  pred = np.zeros((2, 4, 4), np.int32)
  ood = np.zeros((2, 4, 4), np.uint8)
  # Case 0: liver 3 px, hcc 4 px, an OOD tumour (label 0) on the bottom row.
  label[0, 0, 1] = label[0, 0, 2] = label[0, 1, 1] = 1
  label[0, 1:3, 2:4] = 2
  ood[0, 3, 0:2] = 1
  pred[0, 0, 1] = pred[0, 0, 2] = 1  # liver: tp 2, fn 1 → 4/5
  pred[0, 1, 2] = pred[0, 1, 3] = pred[0, 2, 2] = pred[0, 2, 1] = 2  # hcc: tp 3, fp 1, fn 1 → 6/8
  pred[0, 3, 0], pred[0, 3, 1] = 2, 1  # predictions on OOD pixels are ignored
  # Case 1: liver 4 px, cyst 2 px, no hcc.
  label[1, 0, :] = 1
  label[1, 2, 0:2] = 3
  pred[1, 0, :] = 1
  pred[1, 1, 0] = 1  # liver: tp 4, fp 1 → 8/9
  pred[1, 2, 0] = 3  # cyst: tp 1, fn 1 → 2/3
  pred[1, 3, 3] = 2  # a false hcc in a case without hcc does not enter the hcc Dice
  return label, pred, ood


def test_inlier_dice_by_hand():
  label, pred, ood = _dice_cases()
  results = sr.inlier_dice(label, pred, ood, CLASS_NAMES)
  assert set(results) == {
    "dice/liver",
    "dice/hcc",
    "dice/cyst",
    "dice/metastasis",
    "dice/tumour_avg",
    "dice/mean",
  }
  assert results["dice/liver"] == pytest.approx((4 / 5 + 8 / 9) / 2)
  assert results["dice/hcc"] == pytest.approx(6 / 8)
  assert results["dice/cyst"] == pytest.approx(2 / 3)
  assert np.isnan(results["dice/metastasis"])  # no case has metastasis
  assert results["dice/tumour_avg"] == pytest.approx((6 / 8 + 2 / 3) / 2)
  assert results["dice/mean"] == pytest.approx(((4 / 5 + 8 / 9) / 2 + 6 / 8 + 2 / 3) / 3)
  # Without the OOD mask the OOD-pixel predictions count as false positives.
  unmasked = sr.inlier_dice(label, pred, np.zeros_like(ood), CLASS_NAMES)
  assert unmasked["dice/hcc"] == pytest.approx(6 / 9)
  assert unmasked["dice/liver"] == pytest.approx((4 / 6 + 8 / 9) / 2)


def test_inlier_dice_without_tumours_is_nan_for_the_tumour_average():
  label, pred, ood = _dice_cases()
  label = np.where(label >= 2, 0, label)
  results = sr.inlier_dice(label, pred, ood, CLASS_NAMES)
  for name in ("hcc", "cyst", "metastasis", "tumour_avg"):
    assert np.isnan(results[f"dice/{name}"]), name
  assert results["dice/mean"] == pytest.approx(results["dice/liver"])


# ----------------------------------------------------------------------------------------------
# OOD regions.


def _region_outputs(spatial):
  lesion = np.zeros((3, *spatial), np.uint8)
  # Case 0: a lesion touching its last row/slice (dilation must not leak into case 1).
  lesion[(0, *(s - 1 for s in spatial))] = 1
  lesion[(0, *(s // 2 for s in spatial))] = 1
  # Case 1: no lesion. Case 2: one lesion pixel at the origin corner.
  lesion[(2, *(0 for _ in spatial))] = 1
  pred = np.zeros((3, *spatial), np.int32)
  pred[(1, *(1 for _ in spatial))] = 1
  pred[(2, *(s - 1 for s in spatial))] = 3
  return {"lesion": lesion, "pred": pred}


@pytest.mark.parametrize("spatial", [(7, 6), (5, 4, 6)])
def test_ood_region_modes(spatial):
  outputs = _region_outputs(spatial)
  lesion = outputs["lesion"].astype(bool)
  np.testing.assert_array_equal(sr.ood_region(outputs, _eval_config("lesion")), lesion)
  for radius in (1, 2, 3):
    region = sr.ood_region(outputs, _eval_config("lesion_dilated", radius))
    assert region.dtype == bool
    np.testing.assert_array_equal(region, _np_dilate(lesion, radius))
    assert not region[1].any()  # no dilation across cases
  np.testing.assert_array_equal(sr.ood_region(outputs, _eval_config("lesion_dilated", 0)), lesion)
  np.testing.assert_array_equal(
    sr.ood_region(outputs, _eval_config("predicted_foreground")),
    lesion | (outputs["pred"] > 0),
  )


def test_ood_region_unknown_mode_raises():
  with pytest.raises(ValueError, match="ood_region"):
    sr.ood_region(_region_outputs((4, 4)), _eval_config("everything"))


# ----------------------------------------------------------------------------------------------
# The report.


def _report_outputs(rng):
  """6 cases of 16×16: cases 0–2 hold an OOD tumour, cases 3–5 an inlier tumour."""
  c, size = 6, 16
  yy, xx = np.mgrid[:size, :size]
  liver = ((yy - 8) ** 2 + (xx - 8) ** 2) <= 36
  label = np.zeros((c, size, size), np.int32)
  ood = np.zeros((c, size, size), np.uint8)
  lesion = np.zeros((c, size, size), np.uint8)
  pred = np.zeros((c, size, size), np.int32)
  for i in range(c):
    cy, cx = 6 + i % 3, 6 + i // 3
    tumour = ((yy - cy) ** 2 + (xx - cx) ** 2) <= 4
    label[i][liver] = 1
    lesion[i][tumour] = 1
    if i < 3:
      ood[i][tumour] = 1
      label[i][tumour] = 0
    else:
      label[i][tumour] = 2 + i % 3
    pred[i] = np.where(liver, 1, 0)
    pred[i][tumour] = 2  # the tumour is found (as hcc)
  pred[4] = np.where(liver, 1, 0)  # no predicted lesion: falls back to the predicted foreground
  pred[5] = 0  # nothing predicted: falls back to the whole image
  return {
    "image": rng.uniform(size=(c, size, size)).astype(np.float32),
    "label": label,
    "ood": ood,
    "lesion": lesion,
    "case_ood": np.array([1, 1, 1, 0, 0, 0], np.int32),
    "pred": pred,
    "score/perfect": ood.astype(np.float32) + 0.01 * rng.uniform(size=ood.shape),
    "score/random": rng.uniform(size=ood.shape).astype(np.float32),
  }


def _np_case_scores(score, pred, reduce=np.mean):
  out = []
  for s, p in zip(score, pred, strict=True):
    for mask in (p >= 2, p > 0, np.ones_like(p, bool)):
      if mask.any():
        out.append(reduce(s[mask].astype(np.float64)))
        break
  return np.asarray(out)


def test_report_metrics_and_saved_scores(tmp_path):
  rng = np.random.default_rng(0)
  outputs = _report_outputs(rng)
  workdir = os.path.join(tmp_path, "eval")
  results = sr.report(outputs, _eval_config(), CLASS_NAMES, workdir=workdir, prefix="step_5_")

  # A perfect score map separates the region's OOD pixels from the rest.
  assert results["perfect/auroc"] == 1.0
  assert results["perfect/aupr"] == pytest.approx(1.0)
  assert results["perfect/fpr95"] == 0.0
  assert results["perfect/case_auc"] == 1.0
  # A random one is at chance, and equals sklearn on the brute-force region.
  region = _np_dilate(outputs["lesion"].astype(bool), 2)
  pixel_label = outputs["ood"][region]
  assert 0 < pixel_label.sum() < pixel_label.size
  auroc = sk_metrics.roc_auc_score(pixel_label, outputs["score/random"][region])
  assert results["random/auroc"] == pytest.approx(auroc, abs=1e-9)
  assert abs(results["random/auroc"] - 0.5) < 0.1
  assert results["random/aupr"] == pytest.approx(
    sk_metrics.average_precision_score(pixel_label, outputs["score/random"][region]), abs=1e-9
  )
  # Case AUC from the mean score inside the predicted lesion (with the two fallbacks).
  case = {
    name: _np_case_scores(outputs[f"score/{name}"], outputs["pred"])
    for name in ("perfect", "random")
  }
  assert results["random/case_auc"] == pytest.approx(
    sk_metrics.roc_auc_score(outputs["case_ood"], case["random"]), abs=1e-9
  )
  assert results["num_cases"] == 6.0 and results["num_ood_cases"] == 3.0
  assert results["dice/liver"] > 0.8 and np.isfinite(results["dice/hcc"])

  # The saved scores: region pixels and case scores per method, for later ROC figures.
  assert sorted(os.listdir(workdir)) == ["step_5_class_names.json", "step_5_ood_scores.npz"]
  with np.load(os.path.join(workdir, "step_5_ood_scores.npz")) as saved:
    assert set(saved.files) == {
      "pixel_label",
      "case_label",
      "pixel/perfect",
      "pixel/random",
      "case/perfect",
      "case/random",
    }
    np.testing.assert_array_equal(saved["pixel_label"], pixel_label)
    np.testing.assert_array_equal(saved["case_label"], outputs["case_ood"])
    np.testing.assert_allclose(saved["pixel/random"], outputs["score/random"][region])
    for name in ("perfect", "random"):
      np.testing.assert_allclose(saved[f"case/{name}"], case[name], rtol=1e-6)
  with open(os.path.join(workdir, "step_5_class_names.json")) as f:
    assert json.load(f) == list(CLASS_NAMES)


def test_report_case_reduce_and_no_workdir(tmp_path):
  rng = np.random.default_rng(1)
  outputs = _report_outputs(rng)
  results = sr.report(outputs, _eval_config("lesion", case_reduce="max"), CLASS_NAMES)
  case = _np_case_scores(outputs["score/random"], outputs["pred"], reduce=np.max)
  assert results["random/case_auc"] == pytest.approx(
    sk_metrics.roc_auc_score(outputs["case_ood"], case), abs=1e-9
  )
  # The "lesion" region: only lesion pixels are scored.
  lesion = outputs["lesion"].astype(bool)
  assert results["random/auroc"] == pytest.approx(
    sk_metrics.roc_auc_score(outputs["ood"][lesion], outputs["score/random"][lesion]), abs=1e-9
  )


# ----------------------------------------------------------------------------------------------
# Figure helpers.


@pytest.mark.parametrize(
  "case_ood, count, expected",
  [
    ([0, 1, 1, 0, 1, 0, 0], 10, [1, 0, 2, 3, 4, 5, 6]),
    ([0, 1, 1, 0, 1, 0, 0], 4, [1, 0, 2, 3]),
    ([1, 1, 1, 0], 4, [0, 3, 1, 2]),
    ([0, 0, 0], 2, [0, 1]),
    ([1, 1], 6, [0, 1]),
  ],
)
def test_figure_cases_alternate_ood_and_inlier(case_ood, count, expected):
  cases = sr.figure_cases({"case_ood": np.asarray(case_ood, np.int32)}, count)
  assert cases.dtype == np.int64
  np.testing.assert_array_equal(cases, expected)
  assert len(set(cases.tolist())) == len(cases)


def test_middle_slices_pick_the_slice_with_most_lesion():
  rng = np.random.default_rng(2)
  c, d, h, w = 3, 5, 4, 4
  lesion = np.zeros((c, d, h, w), np.uint8)
  lesion[0, 1, 0, 0] = 1
  lesion[0, 3, :2, :2] = 1  # case 0: slice 3 (4 px) beats slice 1 (1 px)
  lesion[1, 1, :, :] = 1  # case 1: slice 1
  lesion[2, 4, 0, :3] = 1  # case 2: slice 4
  outputs = {
    "image": rng.uniform(size=(c, d, h, w)).astype(np.float32),
    "label": rng.integers(0, 5, size=(c, d, h, w)),
    "lesion": lesion,
    "score/maxquery": rng.normal(size=(c, d, h, w)),
    "case_ood": np.array([1, 0, 1], np.int32),
  }
  cases = np.array([2, 0, 1])
  views = sr.middle_slices(outputs, cases)
  assert set(views) == {"image", "label", "lesion", "score/maxquery"}  # no per-case scalars
  for i, (case, depth) in enumerate(zip(cases, (4, 3, 1), strict=True)):
    for key, view in views.items():
      assert view.shape == (3, h, w)
      np.testing.assert_array_equal(view[i], outputs[key][case, depth])
  # 2-D cases are returned as they are (selected cases only).
  flat = {k: v[:, 2] if np.ndim(v) > 1 else v for k, v in outputs.items()}
  views_2d = sr.middle_slices(flat, cases)
  for key, view in views_2d.items():
    np.testing.assert_array_equal(view, flat[key][cases])
