"""Per-case segmentation metrics on binary masks (host-side numpy/scipy).

All functions take one case: `pred` and `target` are binary masks of the same shape (bool, or
numeric with values in {0, 1}), usually 2-D `[H, W]` or 3-D `[D, H, W]`; no batch or channel axis.
Every function returns a finite float or `inf`; none ever returns NaN.

Overlap metrics, from the confusion counts `tp, fp, fn, tn` (voxel counts):

- `dice = f1 = 2 tp / (2 tp + fp + fn)`, `iou = tp / (tp + fp + fn)` (Jaccard).
- `precision = tp / (tp + fp)`, `recall = tp / (tp + fn)`, `accuracy = (tp + tn) / N`.

Empty-mask conventions (where a ratio would be 0/0):

- Both masks empty: dice, iou, f1, precision and recall are 1.0 (a correct "nothing here").
- Exactly one mask empty: dice, iou, f1, precision and recall are all 0.0 (in particular,
  precision with an empty `pred` and recall with an empty target are 0.0, not NaN).

Surface-distance metrics follow MONAI's definitions:

- Surface: mask voxels with a face-connected (4-conn. 2-D, 6-conn. 3-D) neighbour outside the
  mask (`scipy.ndimage.binary_erosion` with a cross; the border counts as background).
- Directed distances: from each surface voxel of one mask to the nearest surface voxel of the
  other, Euclidean in physical units: `distance_transform_edt(..., sampling=spacing)`, so
  anisotropic voxel spacing is honoured.
- `hd95`: the max of the two directed 95th percentiles (`np.percentile`, linear interpolation)
  of pred->target and target->pred distances (MONAI `compute_hausdorff_distance`, percentile=95).
- `hausdorff` ("HD" in several papers): the plain symmetric Hausdorff distance, the max of both
  directed maxima (the 100th percentile of the same surface distances).
- `asd`: average symmetric surface distance, MONAI `compute_average_surface_distance` with
  `symmetric=True`: the mean of the *pooled* distances (pred->target and target->pred
  concatenated), not the mean of the two directed means.
- Both masks empty: 0.0. Exactly one mask empty: `inf` (MONAI returns NaN/inf with a warning).
  Use `summarize` to average over cases: it averages only finite values and counts the infs.
  `multiclass_report` reports those counts beside the means and can replace `inf` by a penalty
  (`missed_distance`), so that missing a structure never *improves* a mean distance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

Spacing = float | Sequence[float] | None


def _as_mask(x: np.ndarray, name: str) -> np.ndarray:
  """Returns `x` as a bool array, checking it is binary."""
  a = np.asarray(x)
  if a.dtype == np.bool_:
    return a
  if not np.issubdtype(a.dtype, np.number):
    raise ValueError(f"{name} has non-numeric dtype {a.dtype}; expected a binary mask.")
  if a.size and not np.all((a == 0) | (a == 1)):
    raise ValueError(f"{name} is not binary (values other than 0/1); threshold it first.")
  return a == 1


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Validates and converts a (pred, target) pair of binary masks."""
  p, t = _as_mask(pred, "pred"), _as_mask(target, "target")
  if p.shape != t.shape:
    raise ValueError(f"pred shape {p.shape} does not match target shape {t.shape}.")
  if p.ndim < 1 or p.size == 0:
    raise ValueError(f"masks must be non-empty arrays with rank >= 1, got shape {p.shape}.")
  return p, t


def confusion_counts(pred: np.ndarray, target: np.ndarray) -> tuple[int, int, int, int]:
  """Voxel counts `(tp, fp, fn, tn)` (Python ints) of `[*spatial]` binary `pred` vs `target`."""
  p, t = _pair(pred, target)
  tp = int(np.count_nonzero(p & t))
  fp = int(np.count_nonzero(p & ~t))
  fn = int(np.count_nonzero(~p & t))
  return tp, fp, fn, int(p.size) - tp - fp - fn


def _ratio(num: int, den: int, if_zero: float) -> float:
  """`num / den` as a float, or `if_zero` when `den == 0`."""
  return if_zero if den == 0 else num / den


def dice(pred: np.ndarray, target: np.ndarray) -> float:
  """Dice `2 tp / (2 tp + fp + fn)` of `[*spatial]` masks; 1.0 if both are empty.
  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.segmentation import dice
    >>> a, b = np.array([[1, 1, 0, 0]]), np.array([[1, 0, 0, 0]])
    >>> round(dice(a, b), 4), dice(np.zeros(4), np.zeros(4))
    (0.6667, 1.0)
  """
  tp, fp, fn, _ = confusion_counts(pred, target)
  return _ratio(2 * tp, 2 * tp + fp + fn, 1.0)


def f1(pred: np.ndarray, target: np.ndarray) -> float:
  """F1 score of `[*spatial]` masks; identical to `dice` for binary masks."""
  return dice(pred, target)


def iou(pred: np.ndarray, target: np.ndarray) -> float:
  """Jaccard index `tp / (tp + fp + fn)` of `[*spatial]` masks; 1.0 if both are empty."""
  tp, fp, fn, _ = confusion_counts(pred, target)
  return _ratio(tp, tp + fp + fn, 1.0)


def precision(pred: np.ndarray, target: np.ndarray) -> float:
  """Precision `tp / (tp + fp)`; if `pred` is empty, 1.0 when `target` is empty too, else 0.0."""
  tp, fp, fn, _ = confusion_counts(pred, target)
  return _ratio(tp, tp + fp, float(fn == 0))


def recall(pred: np.ndarray, target: np.ndarray) -> float:
  """Recall `tp / (tp + fn)`; if `target` is empty, 1.0 when `pred` is empty too, else 0.0."""
  tp, fp, fn, _ = confusion_counts(pred, target)
  return _ratio(tp, tp + fn, float(fp == 0))


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
  """Voxel accuracy `(tp + tn) / N` of `[*spatial]` masks."""
  tp, fp, fn, tn = confusion_counts(pred, target)
  return (tp + tn) / (tp + fp + fn + tn)


def _spacing(spacing: Spacing, ndim: int) -> np.ndarray:
  """Returns the voxel spacing as a positive `[ndim]` float array."""
  s = np.ones(ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
  s = np.full(ndim, s) if s.ndim == 0 else s
  if s.shape != (ndim,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
    raise ValueError(f"spacing must be positive and finite, one per axis ({ndim}); got {spacing}.")
  return s


def _surface(mask: np.ndarray) -> np.ndarray:
  """Surface voxels of a bool mask: voxels with a face neighbour outside (border = background)."""
  cross = ndimage.generate_binary_structure(mask.ndim, 1)
  return mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)


def _directed_distances(
  pred: np.ndarray, target: np.ndarray, spacing: Spacing
) -> tuple[np.ndarray, np.ndarray] | None:
  """Distances `(pred->target [Np], target->pred [Nt])`; `[0]`s if both empty, None if one is."""
  p, t = _pair(pred, target)
  s = _spacing(spacing, p.ndim)
  if not p.any() or not t.any():
    return (np.zeros(0), np.zeros(0)) if p.any() == t.any() else None
  sp, st = _surface(p), _surface(t)
  to_t = ndimage.distance_transform_edt(~st, sampling=s)
  to_p = ndimage.distance_transform_edt(~sp, sampling=s)
  return to_t[sp], to_p[st]


def hd95(pred: np.ndarray, target: np.ndarray, spacing: Spacing = None) -> float:
  """95th-percentile symmetric Hausdorff distance (MONAI definition; see module docstring).

  `pred`, `target`: `[*spatial]` binary masks; `spacing`: voxel size per axis (scalar or
  `[ndim]`, None = 1.0). Returns a distance in the units of `spacing`: 0.0 if both masks are
  empty, `inf` if exactly one is.
  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.segmentation import hd95
    >>> a = np.zeros((8, 8), bool); a[2:4, 2:4] = True
    >>> b = np.zeros((8, 8), bool); b[2:4, 4:6] = True
    >>> hd95(a, b), hd95(a, b, spacing=(1.0, 0.5))
    (2.0, 1.0)
  """
  d = _directed_distances(pred, target, spacing)
  if d is None:
    return float("inf")
  if d[0].size == 0:
    return 0.0
  return float(max(np.percentile(d[0], 95), np.percentile(d[1], 95)))


def hausdorff(pred: np.ndarray, target: np.ndarray, spacing: Spacing = None) -> float:
  """Symmetric Hausdorff distance: the max of both directed maximal surface distances.

  Arguments as `hd95`. Returns 0.0 if both masks are empty, `inf` if exactly one is.

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.segmentation import hausdorff
    >>> a = np.zeros((8, 8), bool); a[2:4, 2:4] = True
    >>> b = np.zeros((8, 8), bool); b[2:4, 2:7] = True
    >>> hausdorff(a, b), hausdorff(a, np.zeros_like(a))
    (3.0, inf)
  """
  d = _directed_distances(pred, target, spacing)
  if d is None:
    return float("inf")
  if d[0].size == 0:
    return 0.0
  return float(max(d[0].max(), d[1].max()))


def asd(pred: np.ndarray, target: np.ndarray, spacing: Spacing = None) -> float:
  """Average symmetric surface distance: mean of pooled pred->target and target->pred distances.

  Arguments as `hd95`. Returns 0.0 if both masks are empty, `inf` if exactly one is.
  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.segmentation import asd
    >>> a = np.zeros((8, 8), bool); a[2:4, 2:4] = True
    >>> asd(a, a), asd(a, np.zeros_like(a))
    (0.0, inf)
  """
  d = _directed_distances(pred, target, spacing)
  if d is None:
    return float("inf")
  pooled = np.concatenate(d)
  return 0.0 if pooled.size == 0 else float(pooled.mean())


def per_class_dice(
  pred_labels: np.ndarray,
  target_labels: np.ndarray,
  num_classes: int,
  include_background: bool = False,
) -> np.ndarray:
  """Dice of each class of integer label maps, one-vs-rest.

  Args:
    pred_labels: `[*spatial]` integer labels in `[0, num_classes)`.
    target_labels: `[*spatial]` integer labels in `[0, num_classes)`.
    num_classes: number of classes, background (class 0) included.
    include_background: whether to include class 0.

  Returns:
    `[K]` float64 Dice per class, `K = num_classes` or `num_classes - 1`; a class absent from both
    maps scores 1.0 (the both-empty convention).
  """
  p, t = np.asarray(pred_labels), np.asarray(target_labels)
  if p.shape != t.shape:
    raise ValueError(f"pred_labels shape {p.shape} does not match target_labels {t.shape}.")
  for name, a in (("pred_labels", p), ("target_labels", t)):
    if not np.issubdtype(a.dtype, np.integer):
      raise ValueError(f"{name} must be an integer array, got dtype {a.dtype}.")
    if a.size and (a.min() < 0 or a.max() >= num_classes):
      raise ValueError(f"{name} has labels outside [0, {num_classes}).")
  start = 0 if include_background else 1
  return np.array([dice(p == k, t == k) for k in range(start, num_classes)], dtype=np.float64)


def segmentation_report(
  pred: np.ndarray, target: np.ndarray, spacing: Spacing = None
) -> dict[str, float]:
  """All metrics for one binary case (arguments as `hd95`).

  Returns:
    Dict with keys `dice, iou, precision, recall, f1, accuracy, hd95, hd, asd`.
  """
  report = {fn.__name__: fn(pred, target) for fn in (dice, iou, precision, recall, f1, accuracy)}
  report["hd95"] = hd95(pred, target, spacing)
  report["hd"] = hausdorff(pred, target, spacing)
  report["asd"] = asd(pred, target, spacing)
  return report


def summarize(values: Iterable[float]) -> dict[str, float]:
  """Mean and std over cases of a metric that may be `inf` (e.g. `hd95` with one empty mask).

  Args:
    values: `[N]` per-case values, N >= 1; NaN is rejected.

  Returns:
    `{mean, std, n, n_inf}`: mean and population std (ddof=0) of the finite values only, `n` the
    number of finite values and `n_inf` the number of infinite ones. If no value is finite, mean
    and std are `inf`.
  Example:
    >>> from mlsup_jax.metrics.segmentation import summarize
    >>> summarize([1.0, 3.0, float("inf")])
    {'mean': 2.0, 'std': 1.0, 'n': 2, 'n_inf': 1}
  """
  v = np.asarray(list(values), dtype=np.float64).reshape(-1)
  if v.size == 0:
    raise ValueError("summarize needs at least one value.")
  if np.any(np.isnan(v)):
    raise ValueError("summarize got NaN values; metrics here never produce NaN.")
  finite = v[np.isfinite(v)]
  n, n_inf = int(finite.size), int(v.size - finite.size)
  if n == 0:
    return {"mean": float("inf"), "std": float("inf"), "n": 0, "n_inf": n_inf}
  return {"mean": float(finite.mean()), "std": float(finite.std()), "n": n, "n_inf": n_inf}


DISTANCES = {"hd95": hd95, "hd": hausdorff, "asd": asd}


def missed_distance_value(missed_distance: str | float, shape, spacing: Spacing = None) -> float:
  """The distance a missed or spurious structure counts as (`multiclass_report`).

  Args:
    missed_distance: "exclude" (inf: left out of the mean, counted), "diagonal" (the image's
      diagonal in the units of `spacing`: no two surface points can be farther apart), or a
      number (as a float or its string).
    shape: the case's spatial shape.
    spacing: voxel size per axis.
  """
  if missed_distance == "exclude":
    return float("inf")
  if missed_distance == "diagonal":
    extent = np.asarray(shape, np.float64) * _spacing(spacing, len(shape))
    return float(np.sqrt(np.sum(extent * extent)))
  try:
    value = float(missed_distance)
  except (TypeError, ValueError):
    value = -1.0
  if not value >= 0 or not np.isfinite(value):
    raise ValueError(
      f"missed_distance must be 'exclude', 'diagonal' or a distance ≥ 0, got {missed_distance!r}."
    )
  return value


def multiclass_report(
  preds, labels, class_names: Sequence[str], spacing: Spacing = None, missed_distance="exclude"
) -> dict[str, float]:
  """Per-class and mean Dice / IoU / HD95 / HD / ASD over cases of integer label maps, and mIoU.

  Args:
    preds: `[N, *spatial]` predicted labels.
    labels: `[N, *spatial]` reference labels.
    class_names: one name per class, background (class 0) first.
    spacing: voxel size per axis (None = 1).
    missed_distance: what a surface distance is when exactly one of prediction and reference
      has the class in a case (a missed or spurious structure): "exclude" (default, MONAI's
      `inf`: left out of the means and counted in `<metric>/<class>_num_inf`, `num_missed`,
      `num_spurious`), "diagonal" (the image diagonal) or a number.

  Returns:
    `<metric>/<class>` (mean over the cases where the class is in the prediction or the
    reference), `<metric>` = mean over foreground classes, `miou` (background included),
    `num_missed` (case–class pairs in the reference but not predicted: Dice 0, distance inf),
    `num_spurious` (predicted but not in the reference) and `num_images`. With "exclude" a
    missed class lowers the mean Dice but leaves the mean distances, so read the distances with
    `num_missed` beside them. With no foreground anywhere, the both-empty convention: Dice / IoU
    1, distances 0.

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.segmentation import multiclass_report
    >>> label = np.zeros((1, 8, 8), int); label[0, 1:3, 1:3] = 1; label[0, 5:7, 5:7] = 2
    >>> pred = np.where(label == 1, 1, 0)  # class 2 missed entirely
    >>> r = multiclass_report(pred, label, ("bg", "a", "b"))
    >>> r["dice"], r["hd95"], r["num_missed"]
    (0.5, 0.0, 1.0)
    >>> multiclass_report(pred, label, ("bg", "a", "b"), missed_distance=10.0)["hd95"]
    5.0
  """
  preds, labels = np.asarray(preds), np.asarray(labels)
  results, class_means = {}, {"dice": [], "iou": [], **{k: [] for k in DISTANCES}}
  all_iou = []
  missed = spurious = 0
  for k, name in enumerate(class_names):
    cases = [(p == k, t == k) for p, t in zip(preds, labels, strict=True)]
    cases = [(p, t) for p, t in cases if p.any() or t.any()]
    if not cases:
      continue
    all_iou.append(np.mean([iou(p, t) for p, t in cases]))
    if k == 0:
      continue
    missed += sum(1 for p, t in cases if t.any() and not p.any())
    spurious += sum(1 for p, t in cases if p.any() and not t.any())
    per_case = {"dice": [dice(p, t) for p, t in cases], "iou": [iou(p, t) for p, t in cases]}
    for metric, fn in DISTANCES.items():
      values = [fn(p, t, spacing) for p, t in cases]
      penalty = [missed_distance_value(missed_distance, p.shape, spacing) for p, _ in cases]
      per_case[metric] = [v if np.isfinite(v) else q for v, q in zip(values, penalty, strict=True)]
    for metric, values in per_case.items():
      summary = summarize(values)
      results[f"{metric}/{name}"] = summary["mean"]
      if summary["n_inf"]:
        results[f"{metric}/{name}_num_inf"] = summary["n_inf"]
      if np.isfinite(summary["mean"]):
        class_means[metric].append(summary["mean"])
  present = any(key.startswith("dice/") for key in results)
  for metric, values in class_means.items():
    if not present:
      results[metric] = 1.0 if metric in ("dice", "iou") else 0.0
    else:  # Surface distances of classes that are never both present are inf, not averaged.
      results[metric] = float(np.mean(values)) if values else float("inf")
  results["miou"] = float(np.mean(all_iou))
  results["num_missed"] = missed
  results["num_spurious"] = spurious
  results["num_images"] = len(preds)
  return {k: float(v) for k, v in results.items()}


def boundary_mask(label) -> np.ndarray:
  """`label: [N, *S]` int → bool `[N, *S]`: pixels with a face neighbour of another label."""
  label = np.asarray(label)
  mask = np.zeros(label.shape, bool)
  for axis in range(1, label.ndim):
    differs = np.diff(label, axis=axis) != 0
    lead = [slice(None)] * label.ndim
    trail = [slice(None)] * label.ndim
    lead[axis], trail[axis] = slice(None, -1), slice(1, None)
    mask[tuple(lead)] |= differs
    mask[tuple(trail)] |= differs
  return mask


def boundary_accuracy(pred, label) -> float | None:
  """Pixel accuracy of `pred` on the boundary pixels of `label` (`boundary_mask`), both
  `[N, *S]`; None when the labels have no boundary (a single class everywhere).

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.segmentation import boundary_accuracy
    >>> label = np.array([[[0, 0, 1, 1]]])  # boundary: the middle two pixels
    >>> boundary_accuracy(np.array([[[1, 0, 0, 1]]]), label)
    0.5
  """
  pred, label = np.asarray(pred), np.asarray(label)
  if pred.shape != label.shape:
    raise ValueError(f"pred {pred.shape} and label {label.shape} must have the same shape.")
  mask = boundary_mask(label)
  if not mask.any():
    return None
  return float(np.mean(pred[mask] == label[mask]))


def stack_patient_volumes(pred, label, patient, slice_index):
  """Slices `[N, H, W]` stacked into patient volumes `[P, D, H, W]` (in slice order).

  Raises:
    ValueError: when patients have different numbers of slices.
  """
  patient, slice_index = np.asarray(patient), np.asarray(slice_index)
  ids = np.unique(patient)
  counts = {int(p): int(np.sum(patient == p)) for p in ids}
  if len(set(counts.values())) != 1:
    raise ValueError(f"Patients have different slice counts {counts}; cannot stack volumes.")
  order = np.lexsort((slice_index, patient))
  depth = counts[int(ids[0])]
  shape = (len(ids), depth, *np.shape(pred)[1:])
  return np.asarray(pred)[order].reshape(shape), np.asarray(label)[order].reshape(shape)
