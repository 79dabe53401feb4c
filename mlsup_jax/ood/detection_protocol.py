"""Image-level anomaly-detection evaluation (TEND, CVAD and their baselines; thesis Ch. 4, spec S1).

A detector's `eval_step` returns per-image score *components* (e.g. TEND's classifier
probability and centre distance); a *score function* combines them into one anomaly score,
possibly after normalising a component with statistics from a *reference* set (CVAD's min–max of
the reconstruction error). Two protocols decide where the reference statistics and the decision
threshold come from:

- `"clean"` (default): both are fitted on a labelled validation split (ID validation images and
  held-out OOD images, disjoint from the test set) — the evaluation pass over
  `config.data.calibration_source`, which the trainer hands over as `outputs["calibration"]`.
- `"transductive"`: both are fitted on the test set itself, as the thesis and the authors' code
  do (min–max over the test scores; G-mean threshold chosen on the test ROC). Optimistic; kept
  so numbers are comparable with the thesis.

Threshold-free metrics (AUROC, AUPR, FPR95) do not depend on the threshold, but they do depend on
the normalisation whenever a score sums normalised components.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping

import jax
import ml_collections
import numpy as np

from mlsup_jax.metrics import ood as ood_metrics

PROTOCOLS = ("clean", "transductive")

Components = Mapping[str, np.ndarray]
# (components of the images to score, components of the reference set) → scores [N].
ScoreFn = Callable[[Components, Components], np.ndarray]


def image_labels(batch: Mapping) -> dict:
  """The per-image labels an `eval_step` passes through with its score components.

  `ood [B]` always; `class_id [B]` (the image's class in the source, e.g. which finding an
  abnormal radiograph has) when the batch carries it, so results can be broken down by class.
  """
  labels = {"ood": batch["ood"]}
  if "class_id" in batch:
    labels["class_id"] = batch["class_id"]
  return labels


@dataclasses.dataclass(frozen=True)
class MinMax:
  """`(x − low) / (high − low)`, fitted on a reference set (the thesis's score scaling)."""

  low: float
  high: float

  @classmethod
  def fit(cls, values) -> MinMax:
    """Fits on `values: [N]` (finite, N ≥ 1)."""
    values = np.asarray(values, np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
      raise ValueError("MinMax needs a non-empty set of finite reference values.")
    return cls(float(values.min()), float(values.max()))

  def __call__(self, values) -> np.ndarray:
    # A constant reference set would divide by zero: scale by 1 then.
    span = self.high - self.low
    return (np.asarray(values, np.float64) - self.low) / (span if span > 0 else 1.0)


def minmax_normalised(values, reference) -> np.ndarray:
  """`values` min–max scaled with the range of `reference` (both `[N]`)."""
  return MinMax.fit(reference)(values)


def detection_report(
  test_scores, test_labels, threshold_scores=None, threshold_labels=None
) -> dict[str, float]:
  """Threshold-free metrics on the test set, and decision metrics at a G-mean threshold.

  Args:
    test_scores: `[N]` anomaly scores of the test images, higher = more OOD.
    test_labels: `[N]` 1 = OOD, 0 = ID.
    threshold_scores: `[M]` scores on which the G-mean threshold is chosen (the validation
      split, clean protocol); None chooses it on the test scores (transductive).
    threshold_labels: `[M]` labels of `threshold_scores`.

  Returns:
    `{auroc, aupr, fpr95, threshold, tpr, fpr, diff, gmean, accuracy, precision, f1, num_id,
    num_ood}`, rates as fractions.
  """
  if (threshold_scores is None) != (threshold_labels is None):
    raise ValueError("Give both threshold_scores and threshold_labels, or neither.")
  if threshold_scores is None:
    threshold_scores, threshold_labels = test_scores, test_labels
  threshold = ood_metrics.gmean_threshold(threshold_scores, threshold_labels)
  if np.isnan(threshold):
    raise ValueError(
      "The G-mean threshold needs ID and OOD images in the split it is fitted on; that split "
      "has one class only (does the validation source hold OOD images?)."
    )
  report = ood_metrics.ood_report(test_scores, test_labels)
  return {
    "auroc": report["auroc"],
    "aupr": report["aupr"],
    "fpr95": report["fpr95"],
    **ood_metrics.threshold_report(test_scores, test_labels, threshold),
    "num_id": report["num_neg"],
    "num_ood": report["num_pos"],
  }


def evaluate_scores(
  outputs: Mapping[str, np.ndarray],
  score_fns: Mapping[str, ScoreFn],
  protocol: str = "clean",
  label_key: str = "ood",
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
  """Scores the test images with every score function and reports each under `protocol`.

  Args:
    outputs: per-image components of the test pass (`[N]` arrays, including `label_key`); under
      the clean protocol also `outputs["calibration"]`, the same components of the validation
      pass.
    score_fns: score name → `ScoreFn`.
    protocol: "clean" or "transductive" (module docstring).
    label_key: the component holding the OOD labels.

  Returns:
    `(reports, scores)`: score name → `detection_report` dict, and score name → test scores
    `[N]` (for figures).
  """
  if protocol not in PROTOCOLS:
    raise ValueError(f"Unknown protocol {protocol!r}: use one of {PROTOCOLS}.")
  test = {k: np.asarray(v) for k, v in outputs.items() if k != "calibration"}
  if protocol == "clean":
    if "calibration" not in outputs:
      raise ValueError(
        "The clean protocol fits thresholds and normalisation on a validation split: set "
        "config.data.calibration_source (or use eval.protocol='transductive')."
      )
    reference = {k: np.asarray(v) for k, v in outputs["calibration"].items()}
  else:
    reference = test
  reports, scores = {}, {}
  for name, score_fn in score_fns.items():
    scores[name] = np.asarray(score_fn(test, reference), np.float64)
    if protocol == "clean":
      reports[name] = detection_report(
        scores[name], test[label_key], score_fn(reference, reference), reference[label_key]
      )
    else:
      reports[name] = detection_report(scores[name], test[label_key])
  return reports, scores


def flatten_reports(reports: Mapping[str, Mapping[str, float]], main: str) -> dict[str, float]:
  """`{score: {metric: v}}` → `{metric: v}` for the `main` score plus `score/metric` for all."""
  flat = dict(reports[main])
  for name, report in reports.items():
    flat.update({f"{name}/{metric}": value for metric, value in report.items()})
  return flat


def report(
  outputs: Mapping[str, np.ndarray],
  score_fns: Mapping[str, ScoreFn],
  eval_config: ml_collections.ConfigDict,
  workdir: str | None,
  prefix: str,
) -> dict[str, float]:
  """A detector's `evaluate`: every score under `eval_config.protocol`, flattened around
  `eval_config.score`; under the clean protocol the transductive numbers are added as
  `transductive/<score>/<metric>` (thesis-comparable, same evaluation pass). With a `workdir`,
  the test scores (`<prefix>_scores.npz`, with `ood` and, when present, `class_id`) and, when
  `eval_config.save_figures`, their ROC / PR curves (`<prefix>_roc.png`).
  """
  reports, test_scores = evaluate_scores(outputs, score_fns, eval_config.protocol)
  results = flatten_reports(reports, main=eval_config.score)
  if eval_config.protocol == "clean":
    transductive, _ = evaluate_scores(outputs, score_fns, "transductive")
    for name, metrics in transductive.items():
      results.update({f"transductive/{name}/{k}": v for k, v in metrics.items()})
  if workdir is not None and jax.process_index() == 0:
    labels = np.asarray(outputs["ood"])
    saved = dict(test_scores, ood=labels)
    if "class_id" in outputs:
      saved["class_id"] = np.asarray(outputs["class_id"])
    np.savez(os.path.join(workdir, f"{prefix}_scores.npz"), **saved)
    if eval_config.save_figures:
      from mlsup_jax.viz import ood as ood_viz  # matplotlib only when figures are written

      ood_viz.save_roc_curves(
        os.path.join(workdir, f"{prefix}_roc.png"),
        {name: (scores, labels) for name, scores in test_scores.items()},
        title=f"{prefix} ({eval_config.protocol} protocol)",
      )
  return results
