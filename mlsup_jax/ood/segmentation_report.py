"""Host-side evaluation of segmentation + OOD localization (MaxQuery and its baselines).

Every method of this family returns, per evaluation case, the arrays below (its `eval_step`),
and calls `report(...)` from its `evaluate`:

* `label [*S]` inlier classes (OOD-tumour pixels are 0), `ood [*S]` OOD-tumour mask,
  `lesion [*S]` any-tumour mask, `case_ood []`, `pred [*S]` the predicted class,
  `image [*S]` (windowed to [0, 1], for figures), `score/<name> [*S]` one pixel map per OOD
  score (higher = more OOD), optionally `assignment [*S]` (argmax query).

Protocol choices the paper leaves open (NOT STATED in Yuan et al.; config fields in `eval`):

* **Inlier Dice per class** (`dice/<class>`): per case, over the cases whose ground truth has
  the class, with OOD-tumour pixels excluded; `dice/tumour_avg` is the mean over tumour classes
  (the paper's "Avg."), `dice/mean` over organ + tumour classes.
* **Pixel OOD region** (`eval.ood_region`): `lesion` (the configs' default) scores the
  ground-truth lesions — OOD-tumour pixels are positives, inlier-tumour pixels negatives: "which
  tumour pixels belong to an unseen subtype"; `lesion_dilated` adds a ring of
  `eval.region_dilation` pixels of surrounding tissue (negatives), which mostly measures how
  uncertain lesion borders are; `predicted_foreground` uses the pixels predicted as organ or
  tumour plus the ground-truth lesions (so no OOD pixel escapes scoring).
* **Case score** (`eval.case_reduce`): the mean (or max / p95) of the pixel score inside the
  predicted lesion (pred ≥ first tumour class), falling back to the predicted foreground and
  then the whole image when the prediction is empty; case label = `case_ood`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import ml_collections
import numpy as np
from scipy import ndimage

from mlsup_jax.metrics import ood as ood_metrics
from mlsup_jax.metrics import segmentation as seg_metrics

SCORE_PREFIX = "score/"
# The OOD annotations a phantom provides; with them the report adds OOD localization metrics.
OOD_KEYS = ("ood", "lesion", "case_ood")


def has_ood_annotations(outputs: dict) -> bool:
  """Whether the evaluation data carried every OOD annotation (`OOD_KEYS`) and some OOD pixel
  (OOD metrics need positives: a phantom without OOD cases gets the plain report)."""
  return all(key in outputs for key in OOD_KEYS) and bool(np.any(outputs["ood"]))


def plain_report(
  outputs: dict,
  class_names: Sequence[str],
  workdir: str | None = None,
  figure_name: str = "segmentation",
  heat_key: str | None = None,
  num_figure_cases: int = 4,
  missed_distance: str | float = "exclude",
) -> dict[str, float]:
  """The report on data without OOD annotations (a user's NIfTI / nnU-Net data).

  Per-class and mean Dice, IoU, HD95, HD and ASD and mIoU, and the accuracy on label boundaries
  (`metrics/segmentation.multiclass_report`, with its `missed_distance`); with a `workdir`, a
  figure `<figure_name>_cases.png` of the first cases (image, ground truth, prediction and the
  `heat_key` score map, by default the first `score/…` output).
  """
  results = seg_metrics.multiclass_report(
    outputs["pred"], outputs["label"], class_names, missed_distance=missed_distance
  )
  accuracy = seg_metrics.boundary_accuracy(outputs["pred"], outputs["label"])
  if accuracy is not None:
    results["boundary_accuracy"] = accuracy
  if workdir is not None and "image" in outputs:
    import jax  # Only process 0 writes figures.

    if jax.process_index() == 0:
      keys = sorted(k for k in outputs if k.startswith(SCORE_PREFIX))
      heat_key = heat_key or (keys[0] if keys else None)
      save_case_figure(
        os.path.join(workdir, f"{figure_name}_cases.png"),
        outputs,
        ml_collections.ConfigDict({"num_figure_cases": num_figure_cases}),
        class_names,
        heat_key,
      )
  return results


def inlier_dice(
  label: np.ndarray, pred: np.ndarray, ood: np.ndarray, class_names: Sequence[str]
) -> dict[str, float]:
  """Case-wise Dice per inlier class (background excluded), OOD pixels ignored.

  Args:
    label, pred, ood: `[C, *S]`.
    class_names: K names; class 0 is background.

  Returns:
    `dice/<name>` for classes 1…K−1 (NaN when no case has the class), `dice/tumour_avg`
    (classes ≥ 2) and `dice/mean` (classes ≥ 1), means over classes that occur.
  """
  keep = ~ood.astype(bool)
  results = {}
  for k, name in enumerate(class_names):
    if k == 0:
      continue
    scores = []
    for lab, prd, kp in zip(label, pred, keep, strict=True):
      truth = (lab == k) & kp
      if truth.any():
        scores.append(seg_metrics.dice((prd == k) & kp, truth))
    results[f"dice/{name}"] = float(np.mean(scores)) if scores else float("nan")
  tumour = [results[f"dice/{n}"] for n in class_names[2:]]
  results["dice/tumour_avg"] = float(np.nanmean(tumour)) if np.isfinite(tumour).any() else np.nan
  results["dice/mean"] = float(np.nanmean([results[f"dice/{n}"] for n in class_names[1:]]))
  return results


def ood_region(outputs: dict, eval_config: ml_collections.ConfigDict) -> np.ndarray:
  """The boolean `[C, *S]` mask of pixels scored for OOD localization (module docstring)."""
  lesion = outputs["lesion"].astype(bool)
  name = eval_config.ood_region
  if name == "lesion":
    return lesion
  if name == "lesion_dilated":
    radius = int(eval_config.region_dilation)
    if radius <= 0:
      return lesion
    spatial = lesion.ndim - 1
    structure = ndimage.generate_binary_structure(spatial, 1)[None]  # no dilation across cases
    return ndimage.binary_dilation(lesion, structure=structure, iterations=radius)
  if name == "predicted_foreground":
    return lesion | (outputs["pred"] > 0)
  raise ValueError(
    f"Unknown eval.ood_region {name!r}; expected lesion, lesion_dilated or predicted_foreground."
  )


def report(
  outputs: dict,
  eval_config: ml_collections.ConfigDict,
  class_names: Sequence[str],
  workdir: str | None = None,
  prefix: str = "",
) -> dict[str, float]:
  """Inlier Dice + pixel- and case-level OOD metrics for every `score/<name>` output.

  Also writes `<prefix>ood_scores.npz` (region scores, pixel labels, case scores) to `workdir`
  so a study can draw every method's ROC curve on one figure.

  Returns:
    Dice entries (see `inlier_dice`), and for each score `<name>/auroc`, `<name>/aupr`,
    `<name>/fpr95`, `<name>/case_auc`; `num_cases`, `num_ood_cases`.
  """
  label, pred, ood = outputs["label"], outputs["pred"], outputs["ood"].astype(bool)
  results = inlier_dice(label, pred, ood, class_names)
  region = ood_region(outputs, eval_config)
  tumour_pred = pred >= 2
  foreground = pred > 0
  saved = {"pixel_label": ood[region].astype(np.uint8), "case_label": outputs["case_ood"]}
  for key in sorted(k for k in outputs if k.startswith(SCORE_PREFIX)):
    name = key[len(SCORE_PREFIX) :]
    scores = outputs[key].astype(np.float64)
    pixel = ood_metrics.ood_report(scores[region], ood[region])
    results.update({f"{name}/{m}": pixel[m] for m in ("auroc", "aupr", "fpr95")})
    case = ood_metrics.case_scores(
      scores, tumour_pred, reduce=eval_config.case_reduce, fallback_masks=foreground
    )
    results[f"{name}/case_auc"] = ood_metrics.auroc(case, outputs["case_ood"])
    saved[f"pixel/{name}"] = scores[region].astype(np.float32)
    saved[f"case/{name}"] = case.astype(np.float32)
  results["num_cases"] = float(len(label))
  results["num_ood_cases"] = float(np.sum(outputs["case_ood"]))
  if workdir is not None:
    os.makedirs(workdir, exist_ok=True)
    np.savez_compressed(os.path.join(workdir, f"{prefix}ood_scores.npz"), **saved)
    with open(os.path.join(workdir, f"{prefix}class_names.json"), "w") as f:
      json.dump(list(class_names), f)
  return results


def figure_cases(outputs: dict, count: int) -> np.ndarray:
  """Indices of up to `count` cases for figures: OOD cases and inlier cases alternately (the
  first cases when the data have no OOD annotation)."""
  if "case_ood" not in outputs:
    return np.arange(min(count, len(outputs["label"])), dtype=np.int64)
  ood_cases = np.flatnonzero(outputs["case_ood"] == 1)
  inlier_cases = np.flatnonzero(outputs["case_ood"] == 0)
  order = [c for pair in zip(ood_cases, inlier_cases, strict=False) for c in pair]
  order += [c for c in np.concatenate([ood_cases, inlier_cases]) if c not in order]
  return np.asarray(order[:count], np.int64)


def middle_slices(outputs: dict, cases: np.ndarray) -> dict:
  """2-D views of the chosen cases: 3-D volumes are cut at the slice with the most lesion."""
  views = {k: v[cases] for k, v in outputs.items() if np.ndim(v) > 1}
  lesion = views["lesion"] if "lesion" in views else views["label"] > 0
  if lesion.ndim == 3:
    return views
  depth_axis_sums = lesion.reshape(lesion.shape[0], lesion.shape[1], -1).sum(-1)
  slices = np.argmax(depth_axis_sums, axis=1)
  return {k: v[np.arange(len(cases)), slices] for k, v in views.items()}


def save_case_figure(
  path: str,
  outputs: dict,
  eval_config: ml_collections.ConfigDict,
  class_names: Sequence[str],
  heat_key: str | None,
  group_of_query: np.ndarray | None = None,
) -> str:
  """The per-case OOD figure (image, GT, prediction, `heat_key` heat-map, query assignments).

  Cases are chosen by `figure_cases` (`eval_config.num_figure_cases`); 3-D volumes are cut at
  their most-lesion slice. The assignment panel appears when `outputs` has `assignment`.
  """
  from mlsup_jax.viz import ood as ood_viz  # matplotlib only when figures are written

  views = middle_slices(outputs, figure_cases(outputs, eval_config.num_figure_cases))
  return ood_viz.save_ood_figure(
    path,
    images=views["image"],
    labels=views["label"],
    predictions=views["pred"],
    ood_masks=views["ood"] if "ood" in views else np.zeros_like(views["label"], bool),
    heatmaps=views[heat_key] if heat_key else np.zeros(views["label"].shape, np.float32),
    assignments=views.get("assignment"),
    group_of_query=group_of_query,
    class_names=tuple(class_names),
  )
