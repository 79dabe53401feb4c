"""Instance segmentation metrics (thesis chapter 3: clumped nuclei, steatosis droplets).

Inputs are instance label maps of any shape: 0 = background, every other value one object (the
values need not be consecutive). The standard definitions are the default:

* one-to-one matching at IoU ≥ `iou_threshold` (0.5): the Hungarian assignment maximising the
  total IoU (`scipy.optimize.linear_sum_assignment`) among the pairs above the threshold — above
  0.5 a match is unique anyway, below it the assignment keeps the count maximal;
* precision = TP / #predicted, recall = TP / #reference, F1 = 2 TP / (#predicted + #reference)
  (empty prediction and reference: 1; one of them empty: 0);
* mean matched IoU; panoptic quality PQ = Σ_TP IoU / (TP + FP/2 + FN/2) (Kirillov et al.);
* AJI (Kumar et al. 2017): every reference object with its highest-IoU prediction, intersections
  over unions summed, the predictions never chosen added to the union;
* per-object Hausdorff distance of the matched pairs (`metrics.segmentation.hausdorff`), mean.

`thesis_metrics` gives the numbers the thesis's tables use (its evaluation notebooks, as
`wave2_code_facts.md` reads them), so they can be compared: every prediction is a TP when its
best IoU with any reference object is ≥ 0.5 (no one-to-one constraint, predictions in their
given order, not sorted by score); the cumulative precision `P_k = TP_k / k` and recall
`R_k = TP_k / #reference` arrays, padded as Matterport's `compute_ap` pads them (`[0, P…, 0]`,
`[0, R…, 1]`), give the VOC-style AP (area under the precision envelope), their means are the
table's "precision" and "recall", "F1" is `2PR / (P + R)` of those means, and "Jaccard" is the
sum of the predictions' best IoUs over the length of the padded recall array. Their overlap code
assumes square masks; this one does not.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from mlsup_jax.metrics.segmentation import hausdorff

__all__ = ["instance_report", "iou_matrix", "match_instances", "thesis_metrics"]


def _relabel(labels) -> tuple[np.ndarray, int]:
  """Consecutive ids 1 … n (0 stays background) and n."""
  labels = np.asarray(labels)
  if labels.dtype.kind not in "iub":
    raise ValueError(f"instance labels must be integers, got {labels.dtype}.")
  values, inverse = np.unique(labels, return_inverse=True)
  inverse = inverse.reshape(labels.shape)
  if values[0] == 0:
    return inverse, len(values) - 1
  return inverse + 1, len(values)


def iou_matrix(pred, reference) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(iou [P, R], intersection [P, R], areas)` of every predicted vs reference object.

  `areas = (pred areas [P], reference areas [R])`; one pass over the pixels (a joint histogram).
  """
  pred, reference = np.asarray(pred), np.asarray(reference)
  if pred.shape != reference.shape:
    raise ValueError(f"prediction {pred.shape} and reference {reference.shape} differ in shape.")
  p, num_p = _relabel(pred)
  r, num_r = _relabel(reference)
  joint = np.bincount(p.ravel() * (num_r + 1) + r.ravel(), minlength=(num_p + 1) * (num_r + 1))
  joint = joint.reshape(num_p + 1, num_r + 1)
  intersection = joint[1:, 1:].astype(np.float64)
  area_p = joint[1:, :].sum(1).astype(np.float64)
  area_r = joint[:, 1:].sum(0).astype(np.float64)
  union = area_p[:, None] + area_r[None, :] - intersection
  iou = np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
  return iou, intersection, (area_p, area_r)


def match_instances(pred, reference, iou_threshold: float = 0.5):
  """One-to-one matches `[(pred index, reference index, IoU)]` (0-based, consecutive ids).

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.instances import match_instances
    >>> ref = np.zeros((4, 4), int); ref[:2, :2] = 1; ref[2:, 2:] = 2
    >>> pred = np.zeros((4, 4), int); pred[:2, :2] = 5; pred[2:, 3] = 9
    >>> [(p, r, round(i, 2)) for p, r, i in match_instances(pred, ref)]
    [(0, 0, 1.0), (1, 1, 0.5)]
  """
  iou, _, _ = iou_matrix(pred, reference)
  if not iou.size:
    return []
  eligible = np.where(iou >= iou_threshold, iou, 0.0)
  rows, cols = linear_sum_assignment(eligible, maximize=True)
  return [
    (int(p), int(r), float(iou[p, r]))
    for p, r in zip(rows, cols, strict=True)
    if iou[p, r] >= iou_threshold
  ]


def instance_report(pred, reference, iou_threshold: float = 0.5, spacing=None) -> dict[str, float]:
  """Matching-based instance metrics of one image (module docstring).

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.instances import instance_report
    >>> ref = np.zeros((4, 4), int); ref[:2, :2] = 1; ref[2:, 2:] = 2
    >>> r = instance_report(ref, ref)
    >>> r["f1"], r["aji"], r["pq"]
    (1.0, 1.0, 1.0)

  Args:
    pred, reference: instance label maps of one shape.
    iou_threshold: the matching threshold.
    spacing: pixel size per axis for the Hausdorff distance (None = pixels).

  Returns:
    `precision`, `recall`, `f1`, `mean_matched_iou` (NaN without a match), `pq`, `aji`,
    `hausdorff` (mean over matches; NaN without one), `tp`, `fp`, `fn`, `num_pred`,
    `num_reference`.
  """
  iou, intersection, (area_p, area_r) = iou_matrix(pred, reference)
  num_p, num_r = iou.shape
  matches = match_instances(pred, reference, iou_threshold)
  tp = len(matches)
  fp, fn = num_p - tp, num_r - tp
  if num_p == 0 and num_r == 0:
    precision = recall = f1 = 1.0
  else:
    precision = tp / num_p if num_p else 0.0
    recall = tp / num_r if num_r else 0.0
    f1 = 2 * tp / (num_p + num_r)
  matched = [m[2] for m in matches]
  denominator = tp + 0.5 * fp + 0.5 * fn
  pq = float(np.sum(matched) / denominator) if denominator else 1.0
  # AJI: each reference object with its best-IoU prediction (reuse allowed, as Kumar et al.).
  if num_r:
    best = np.argmax(iou, axis=0) if num_p else np.full(num_r, -1)
    inter = union = 0.0
    used = np.zeros(num_p, bool)
    for r in range(num_r):
      p = best[r]
      if p >= 0 and intersection[p, r] > 0:
        inter += intersection[p, r]
        union += area_p[p] + area_r[r] - intersection[p, r]
        used[p] = True
      else:
        union += area_r[r]
    union += area_p[~used].sum()
    aji = inter / union if union else 0.0
  else:
    aji = 1.0 if num_p == 0 else 0.0
  distances = []
  if matches:
    p_ids, _ = _relabel(pred)
    r_ids, _ = _relabel(reference)
    for p, r, _ in matches:
      distances.append(hausdorff(p_ids == p + 1, r_ids == r + 1, spacing))
  nan = float("nan")
  return {
    "precision": float(precision),
    "recall": float(recall),
    "f1": float(f1),
    "mean_matched_iou": float(np.mean(matched)) if matched else nan,
    "pq": pq,
    "aji": float(aji),
    "hausdorff": float(np.mean(distances)) if distances else nan,
    "tp": float(tp),
    "fp": float(fp),
    "fn": float(fn),
    "num_pred": float(num_p),
    "num_reference": float(num_r),
  }


def thesis_metrics(pred, reference, iou_threshold: float = 0.5) -> dict[str, float]:
  """The thesis tables' AP / "precision" / "recall" / F1 / Jaccard (module docstring).

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.instances import thesis_metrics
    >>> ref = np.zeros((4, 4), int); ref[:2, :2] = 1; ref[2:, 2:] = 2
    >>> pred = ref.copy(); pred[0, 3] = 3  # one extra, unmatched prediction
    >>> r = thesis_metrics(pred, ref)
    >>> r["ap"], round(r["precision"], 4), round(r["recall"], 4)
    (1.0, 0.5333, 0.7)
  """
  iou, _, _ = iou_matrix(pred, reference)
  num_p, num_r = iou.shape
  nan = float("nan")
  if num_p == 0 or num_r == 0:
    return {"ap": nan, "precision": nan, "recall": nan, "f1": nan, "jaccard": nan}
  best = iou.max(axis=1)
  hits = np.cumsum(best >= iou_threshold)
  precisions = np.concatenate([[0.0], hits / np.arange(1, num_p + 1), [0.0]])
  recalls = np.concatenate([[0.0], hits / num_r, [1.0]])
  envelope = precisions.copy()
  for i in range(len(envelope) - 2, -1, -1):
    envelope[i] = max(envelope[i], envelope[i + 1])
  steps = np.where(recalls[1:] != recalls[:-1])[0] + 1
  ap = float(np.sum((recalls[steps] - recalls[steps - 1]) * envelope[steps]))
  precision, recall = float(precisions.mean()), float(recalls.mean())
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  jaccard = float(best.sum() / len(recalls))
  return {"ap": ap, "precision": precision, "recall": recall, "f1": f1, "jaccard": jaccard}
