"""Out-of-distribution (OOD) detection metrics on per-pixel or per-case scores (host-side numpy).

Conventions shared by every function here:

- A higher score means more anomalous / more OOD. Label 1 (positive) is OOD, label 0 is
  in-distribution (ID). A sample is predicted OOD iff `score >= threshold`.
- `scores` and `labels` may have any shape (e.g. `[H, W]` pixels, `[C, D, H, W]` volumes or `[C]`
  cases) but must have the same shape; both are flattened. Scores must be finite (a ValueError
  names the number of non-finite values); labels must be bool or numeric with values in {0, 1}.
- Rates are fractions in [0, 1], not percentages.
- If only one class is present, the undefined quantities are NaN rather than an error, so that a
  batch of evaluations does not stop on one degenerate split: `auroc`, `aupr`, `fpr_at_tpr` and
  `gmean_threshold` return NaN, and `roc_curve` / `tpr_fpr_at_threshold` return NaN for the rate
  of the missing class (sklearn warns and does the same for `roc_curve`).

All curve metrics come from one descending sort of the scores (O(n log n); about 0.2 s for 2
million scores). Tied scores form one operating point, so the results equal sklearn's
`roc_curve(..., drop_intermediate=False)`, `roc_auc_score` (ties count 1/2, Mann-Whitney) and
`average_precision_score` up to float rounding.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

REDUCTIONS = ("mean", "max", "p95")


class _Counts(NamedTuple):
  """Cumulative confusion counts at each distinct threshold, thresholds descending."""

  tps: np.ndarray  # [T] float64, positives with score >= thresholds[i]
  fps: np.ndarray  # [T] float64, negatives with score >= thresholds[i]
  thresholds: np.ndarray  # [T] float64, distinct scores, strictly decreasing
  num_pos: int
  num_neg: int


def _validate(scores, labels) -> tuple[np.ndarray, np.ndarray]:
  """Flattens and checks `(scores, labels)`; returns `([n] float64, [n] bool)`."""
  s, y = np.asarray(scores), np.asarray(labels)
  if s.shape != y.shape:
    raise ValueError(f"scores shape {s.shape} does not match labels shape {y.shape}.")
  if s.size == 0:
    raise ValueError("scores and labels are empty.")
  if not (np.issubdtype(s.dtype, np.number) or s.dtype == np.bool_):
    raise ValueError(f"scores have non-numeric dtype {s.dtype}.")
  s = s.reshape(-1).astype(np.float64, copy=False)
  bad = s.size - int(np.count_nonzero(np.isfinite(s)))
  if bad:
    raise ValueError(f"scores contain {bad} non-finite values (NaN or inf) out of {s.size}.")
  y = y.reshape(-1)
  if y.dtype != np.bool_:
    if not np.issubdtype(y.dtype, np.number):
      raise ValueError(f"labels have non-numeric dtype {y.dtype}; expected 0 (ID) / 1 (OOD).")
    if not np.all((y == 0) | (y == 1)):
      raise ValueError("labels must be 0 (ID) or 1 (OOD); found other values.")
    y = y == 1
  return s, y


def _counts(scores, labels) -> _Counts:
  """Sorts once and accumulates TP/FP counts at every distinct score (sklearn's algorithm)."""
  s, y = _validate(scores, labels)
  # Ties are grouped below, so the order inside a tie group does not matter: no stable sort.
  order = np.argsort(-s)
  s, y = s[order], y[order]
  # Index of the last sample of each run of equal scores.
  ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
  tps = np.cumsum(y, dtype=np.int64)[ends]
  fps = ends + 1 - tps
  num_pos = int(tps[-1])
  return _Counts(
    tps.astype(np.float64), fps.astype(np.float64), s[ends], num_pos, int(s.size) - num_pos
  )


def _rate(count: np.ndarray, total: int) -> np.ndarray:
  """`count / total`, or NaN everywhere when `total == 0` (class absent)."""
  return np.full(count.shape, np.nan) if total == 0 else count / total


def roc_curve(
  scores, labels, drop_intermediate: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """ROC curve, identical to `sklearn.metrics.roc_curve` (same `drop_intermediate` meaning).

  Args:
    scores: `[*S]` finite scores, higher = more OOD.
    labels: `[*S]` labels, 1 = OOD (positive), 0 = ID.
    drop_intermediate: drop points collinear with their neighbours (sklearn's default is True;
      ours is False so that every distinct threshold is an operating point).

  Returns:
    `(fpr [T+1], tpr [T+1], thresholds [T+1])` float64, thresholds strictly decreasing: point `i`
    predicts OOD iff `score >= thresholds[i]`. Point 0 is `(0, 0)` with threshold `inf`. With
    one class absent its rate is NaN.
  """
  c = _counts(scores, labels)
  tps, fps, thr = c.tps, c.fps, c.thresholds
  if drop_intermediate and tps.size > 2:
    keep = np.r_[True, (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0), True]
    tps, fps, thr = tps[keep], fps[keep], thr[keep]
  tps, fps, thr = np.r_[0.0, tps], np.r_[0.0, fps], np.r_[np.inf, thr]
  return _rate(fps, c.num_neg), _rate(tps, c.num_pos), thr


def precision_recall_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Precision-recall curve with OOD as positive, as `sklearn.metrics.precision_recall_curve`.

  Args:
    scores: `[*S]` finite scores, higher = more OOD.
    labels: `[*S]` labels, 1 = OOD (positive), 0 = ID.

  Returns:
    `(precision [T+1], recall [T+1], thresholds [T])` float64 with thresholds increasing and
    recall decreasing; the last point is `(precision 1, recall 0)` with no threshold. Without
    positives, recall is NaN (sklearn sets it to 1).
  """
  c = _counts(scores, labels)
  precision = c.tps / (c.tps + c.fps)  # every threshold holds >= 1 sample: no 0/0
  recall = _rate(c.tps, c.num_pos)
  return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], c.thresholds[::-1].copy()


def _auroc(c: _Counts) -> float:
  if c.num_pos == 0 or c.num_neg == 0:
    return float("nan")
  # Trapezoid over all points incl. the origin: a tie group counts half (Mann-Whitney U).
  tps, fps = np.r_[0.0, c.tps], np.r_[0.0, c.fps]
  area = np.sum(np.diff(fps) * (tps[1:] + tps[:-1])) / 2
  return float(area / (c.num_pos * c.num_neg))


def _aupr(c: _Counts) -> float:
  if c.num_pos == 0 or c.num_neg == 0:
    return float("nan")
  # Step-function integral sum_i (R_i - R_{i-1}) P_i, as sklearn's average_precision_score.
  precision = c.tps / (c.tps + c.fps)
  return float(np.sum(np.diff(np.r_[0.0, c.tps]) * precision) / c.num_pos)


def _fpr_at_tpr(c: _Counts, tpr: float) -> float:
  if not 0.0 <= tpr <= 1.0:
    raise ValueError(f"tpr must be in [0, 1], got {tpr}.")
  if c.num_pos == 0 or c.num_neg == 0:
    return float("nan")
  if tpr <= 0.0:
    return 0.0  # the (0, 0) point at threshold inf
  # Same float comparison as on sklearn's tpr array, so the chosen point matches it exactly.
  first = int(np.argmax(c.tps / c.num_pos >= tpr))  # tpr reaches 1 at the last point
  return float(c.fps[first] / c.num_neg)


def auroc(scores, labels) -> float:
  """Area under the ROC curve (= sklearn `roc_auc_score`); ties count 1/2; NaN if one class.
  Example:
    >>> from mlsup_jax.metrics.ood import auroc
    >>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])  # label 1 = OOD, higher score = more OOD
    0.75
  """
  return _auroc(_counts(scores, labels))


def aupr(scores, labels) -> float:
  """Average precision with OOD as positive (= sklearn `average_precision_score`); NaN if one class.

  This is the non-interpolated step integral `sum_i (R_i - R_{i-1}) P_i`, not a trapezoid; the
  chance level is the OOD fraction.
  """
  return _aupr(_counts(scores, labels))


def fpr_at_tpr(scores, labels, tpr: float = 0.95) -> float:
  """FPR at the first operating point reaching `TPR >= tpr` (FPR95 for the default).

  Thresholds are swept from high to low over the distinct scores (the points of `roc_curve`);
  the first threshold `t` whose TPR (fraction of OOD with `score >= t`) is at least `tpr`
  defines the operating point, and its FPR (fraction of ID with `score >= t`) is returned. With
  ties this is the FPR of the whole tie group, without interpolation between points.

  Args:
    scores: `[*S]` finite scores, higher = more OOD.
    labels: `[*S]` labels, 1 = OOD, 0 = ID.
    tpr: target true-positive rate in [0, 1]; 0 gives 0.0.

  Returns:
    The FPR in [0, 1]; NaN if one class is absent.
  Example:
    >>> from mlsup_jax.metrics.ood import fpr_at_tpr
    >>> fpr_at_tpr([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])  # every OOD caught only at 0.35
    0.5
  """
  return _fpr_at_tpr(_counts(scores, labels), tpr)


def gmean_threshold(scores, labels, drop_intermediate: bool = False) -> float:
  """Threshold maximising the G-mean `sqrt(TPR * (1 - FPR))` over the ROC operating points.

  The first (highest) threshold wins a tie, as `np.argmax` in the TEND/CVAD reference code
  (`fpr, tpr, thr = roc_curve(y, s); thr[argmax(sqrt(tpr * (1 - fpr)))]`). Points are those of
  `roc_curve(..., drop_intermediate)`: the reference code used sklearn's default
  `drop_intermediate=True`, which skips collinear points and can give a slightly different
  optimum; pass True to reproduce it. If every point has G-mean 0 (all ID scored above all OOD),
  the result is `inf` (predict nothing as OOD), as in the reference code.

  Args:
    scores: `[*S]` finite scores, higher = more OOD.
    labels: `[*S]` labels, 1 = OOD, 0 = ID.
    drop_intermediate: see `roc_curve`.

  Returns:
    The threshold `t*` (predict OOD iff `score >= t*`); NaN if one class is absent.
  """
  fpr, tpr, thr = roc_curve(scores, labels, drop_intermediate)
  if np.isnan(fpr[0]) or np.isnan(tpr[0]):
    return float("nan")
  return float(thr[int(np.argmax(np.sqrt(tpr * (1.0 - fpr))))])


def tpr_fpr_at_threshold(scores, labels, threshold: float) -> tuple[float, float]:
  """`(TPR, FPR)` of the rule "OOD iff `score >= threshold`"; the thesis's DIFF is `TPR - FPR`.

  Args:
    scores: `[*S]` finite scores, higher = more OOD.
    labels: `[*S]` labels, 1 = OOD, 0 = ID.
    threshold: decision threshold (may be `inf`).

  Returns:
    `(tpr, fpr)` floats; the rate of an absent class is NaN.
  """
  s, y = _validate(scores, labels)
  pred = s >= threshold
  num_pos = int(np.count_nonzero(y))
  num_neg = int(y.size) - num_pos
  tp = np.count_nonzero(pred & y)
  fp = np.count_nonzero(pred & ~y)
  tpr = tp / num_pos if num_pos else float("nan")
  fpr = fp / num_neg if num_neg else float("nan")
  return float(tpr), float(fpr)


def threshold_report(scores, labels, threshold: float) -> dict[str, float]:
  """Decision metrics of the rule "OOD iff `score >= threshold`" (OOD is the positive class).

  Args:
    scores: `[*S]` finite scores, higher = more OOD.
    labels: `[*S]` labels, 1 = OOD, 0 = ID.
    threshold: the decision threshold, e.g. fitted on a validation split.

  Returns:
    `{threshold, tpr, fpr, diff, gmean, accuracy, precision, f1}`; `diff = tpr - fpr` (the
    thesis's DIFF). Precision and F1 are 0 when nothing is predicted OOD; rates of an absent
    class are NaN.
  """
  s, y = _validate(scores, labels)
  pred = s >= threshold
  tp = int(np.count_nonzero(pred & y))
  fp = int(np.count_nonzero(pred & ~y))
  num_pos = int(np.count_nonzero(y))
  num_neg = int(y.size) - num_pos
  tpr = tp / num_pos if num_pos else float("nan")
  fpr = fp / num_neg if num_neg else float("nan")
  precision = tp / (tp + fp) if tp + fp else 0.0
  f1 = 2 * tp / (2 * tp + fp + (num_pos - tp)) if num_pos + fp else 0.0
  return {
    "threshold": float(threshold),
    "tpr": float(tpr),
    "fpr": float(fpr),
    "diff": float(tpr - fpr),
    "gmean": float(np.sqrt(tpr * (1.0 - fpr))),
    "accuracy": float(np.mean(pred == y)),
    "precision": float(precision),
    "f1": float(f1),
  }


def gmean_report(scores, labels, drop_intermediate: bool = False) -> dict[str, float]:
  """Thesis-style threshold metrics at the G-mean optimum chosen on these same scores.

  Note the optimum is selected on the data it is reported on (optimistic, as in the thesis); for
  a clean protocol pick the threshold on a held-out split with `gmean_threshold` and report
  `tpr_fpr_at_threshold` on the test split.

  Returns:
    `{threshold, tpr, fpr, diff, gmean, auroc}` with `diff = tpr - fpr`; NaNs if one class.
  """
  t = gmean_threshold(scores, labels, drop_intermediate)
  if np.isnan(t):
    tpr = fpr = float("nan")
  else:
    tpr, fpr = tpr_fpr_at_threshold(scores, labels, t)
  return {
    "threshold": t,
    "tpr": tpr,
    "fpr": fpr,
    "diff": tpr - fpr,
    "gmean": float(np.sqrt(tpr * (1.0 - fpr))),
    "auroc": auroc(scores, labels),
  }


def ood_report(scores, labels) -> dict[str, float | int]:
  """Pixel/case OOD metrics from one sort.

  Args:
    scores: `[*S]` finite scores, higher = more OOD.
    labels: `[*S]` labels, 1 = OOD, 0 = ID.

  Returns:
    `{auroc, aupr, fpr95, num_pos, num_neg}`: fractions in [0, 1] (NaN if one class is absent,
    see the module docstring) and the OOD / ID sample counts.
  Example:
    >>> from mlsup_jax.metrics.ood import ood_report
    >>> report = ood_report([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1])
    >>> report["auroc"], report["fpr95"]
    (1.0, 0.0)
  """
  c = _counts(scores, labels)
  return {
    "auroc": _auroc(c),
    "aupr": _aupr(c),
    "fpr95": _fpr_at_tpr(c, 0.95),
    "num_pos": c.num_pos,
    "num_neg": c.num_neg,
  }


def _region(mask, name: str, shape: tuple[int, ...]) -> np.ndarray:
  m = np.asarray(mask)
  if m.shape != shape:
    raise ValueError(f"{name} shape {m.shape} does not match pixel_scores shape {shape}.")
  if m.dtype != np.bool_:
    if m.size and not np.all((m == 0) | (m == 1)):
      raise ValueError(f"{name} is not binary (values other than 0/1).")
    m = m == 1
  return m


def case_scores(
  pixel_scores,
  region_masks,
  reduce: str = "mean",
  fallback_masks=None,
  return_source: bool = False,
):
  """One OOD score per case: a reduction of the pixel scores inside each case's region.

  For case `c` the pixels used are the first non-empty of: `region_masks[c]` (e.g. the predicted
  lesion), `fallback_masks[c]` (if given, e.g. the predicted foreground), and the whole image.

  Args:
    pixel_scores: `[C, *S]` finite per-pixel scores, higher = more OOD.
    region_masks: `[C, *S]` binary masks of the region to score.
    reduce: `"mean"`, `"max"` or `"p95"` (95th percentile, `np.percentile`'s linear rule).
    fallback_masks: optional `[C, *S]` binary masks used where a region is empty.
    return_source: also return which pixels were used.

  Returns:
    `[C]` float64 case scores; with `return_source`, also `[C]` int8 sources (0 = region,
    1 = fallback mask, 2 = whole image).
  """
  if reduce not in REDUCTIONS:
    raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}.")
  s = np.asarray(pixel_scores, dtype=np.float64)
  if s.ndim < 2 or s.shape[0] == 0 or s[0].size == 0:
    raise ValueError(f"pixel_scores must be [C, *S] with C >= 1 and non-empty S, got {s.shape}.")
  bad = s.size - int(np.count_nonzero(np.isfinite(s)))
  if bad:
    raise ValueError(f"pixel_scores contain {bad} non-finite values (NaN or inf).")
  region = _region(region_masks, "region_masks", s.shape)
  fallback = None if fallback_masks is None else _region(fallback_masks, "fallback_masks", s.shape)
  out = np.empty(s.shape[0], np.float64)
  source = np.zeros(s.shape[0], np.int8)
  for c in range(s.shape[0]):
    mask = region[c]
    if not mask.any():
      if fallback is not None and fallback[c].any():
        mask, source[c] = fallback[c], 1
      else:
        mask, source[c] = np.ones_like(mask), 2
    values = s[c][mask]
    if reduce == "mean":
      out[c] = values.mean()
    elif reduce == "max":
      out[c] = values.max()
    else:
      out[c] = np.percentile(values, 95)
  return (out, source) if return_source else out
