"""MedShift: find the shifted part of an external dataset and measure how much it hurts (Ch. 5).

Spec: thesis_ch5_6 §2. `run_medshift(config, workdir)` (config: `configs/medshift.py`) runs:

1. **Detectors** (site A): one anomaly detector per class, trained on the internal images of
   that class only (`config.detector`, CVAD by default; any detector config whose method has
   `score_functions()` works, e.g. the AE of `configs/reconstruction_detector.py`). Its data
   section becomes a one-vs-rest split of the internal set (ID = the class), so the detector's
   own report (class c vs the other internal classes) lands in `detectors/<class>/`.
2. **Scores** (site B): every external image is scored by the detector of its (observed) class
   with `config.detector_score` (CVAD: `cvad_sum` = s1 + p, MedShift's score; the AE:
   `reconstruction`). Scores that min–max normalise a component (CVAD's `cvad`) use the
   external images of that class as the reference (transductive, as the thesis).
3. **Groups**: per class, scores are split into k groups (`ood/score_grouping.py`; quantile bins
   or 1-D k-means; k fixed or by the elbow rule — then the median of the per-class elbows, so
   every class has the same k as in the thesis), numbered 1 (least anomalous) … k.
4. **Levels**: level TOP j (j = k … 1) KEEPS the external images whose group is ≤ j in their
   class and REMOVES the rest — i.e. the k − j most anomalous groups of every class, dropped in
   every class at the same time. TOP k is the whole external set. `#removed` counts all removed
   images; with k-means groups the share removed per level varies by class.
5. **Quality per level**:
   * `retrained`: a classifier (`config.classifier`, `configs/image_classifier.py`) trained from
     scratch on the level's kept external images (their observed labels) and tested on the
     internal test set — how well the cleaned external set teaches the internal task;
   * `internal`: one classifier trained on the internal set, tested on the level's kept external
     images (the thesis's G, which is not retrained);
   * OTDD between the internal training set and the kept external images (`mlsup_jax.ot.otdd`
     on `config.otdd.features`: flattened pixels after `pixel_pool`× average pooling), mean and
     std over `config.otdd.rounds` rounds that re-draw the `max_samples` subsample.
6. **Report**: `matrix.json`, `matrix.md`, `medshift.png` (`pipelines/medshift_report.py`,
   `viz/medshift.py`). When the external source flags its injected shifts (the
   `phantom_shifted_radiograph` phantom's `shifted` / `shift_type`), the report adds the
   detector's AUROC for them and how many shifted images each level removed.

Every step is cached in `workdir` (detector and classifier workdirs with `eval_results.json`,
`scores.npz`, `levels/top<j>/indices.npy`, `otdd.json`), so re-running resumes and reuses
trained detectors.
"""

from __future__ import annotations

import copy
import json
import os

import ml_collections
import numpy as np
from absl import logging

from mlsup_jax.core import evaluation, trainer
from mlsup_jax.data.sources import build_source
from mlsup_jax.ood import score_grouping
from mlsup_jax.ot import flatten_pixels, otdd
from mlsup_jax.pipelines import medshift_report
from mlsup_jax.pipelines.checkpoint_scoring import CheckpointScorer


def _log(message: str, *args) -> None:
  logging.info("[medshift] " + message, *args)


def load_arrays(source_config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Every example of a source in memory: `image [N, H, W, C]`, `class_id [N]`, and the
  shift flags `shifted` / `shift_type [N]` when the source has them."""
  source = build_source(source_config)
  examples = [source[i] for i in range(len(source))]
  keys = [k for k in ("image", "class_id", "shifted", "shift_type") if k in examples[0]]
  arrays = {k: np.stack([np.asarray(e[k]) for e in examples]) for k in keys}
  if "class_id" not in arrays:
    raise ValueError(f"MedShift needs labelled sources; {source_config.name} has no class_id.")
  arrays["class_names"] = np.asarray(getattr(source, "class_names", None) or [])
  return arrays


def _done(workdir: str) -> dict | None:
  path = os.path.join(workdir, "eval_results.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  return None


def _train(config: ml_collections.ConfigDict, workdir: str, what: str) -> dict:
  """Trains + evaluates `config` in `workdir`, or reuses a finished run there."""
  results = _done(workdir)
  if results is not None:
    _log("%s: reusing the finished run in %s", what, workdir)
    return results
  _log("%s: training in %s", what, workdir)
  return trainer.train_and_evaluate(config, workdir)


def _seeded(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  """A copy of a training config whose model and data-order seeds are the study's `seed`."""
  config = copy.deepcopy(config)
  with config.unlocked():
    config.seed = int(seed)
    config.data.seed = int(seed)
  return config


def detector_config(config: ml_collections.ConfigDict, class_id: int) -> ml_collections.ConfigDict:
  """`config.detector` with its data: a one-vs-rest split of the internal set, ID = `class_id`.

  `config.seed` seeds the split, the detector's initialisation and its data order, so
  `--config.seed=S` reruns the whole study with another seed.
  """
  detector = _seeded(config.detector, config.seed)
  split = {
    "name": "ood_split",
    "base": config.internal.to_dict(),
    "id_classes": (int(class_id),),
    "protocol": "one_vs_rest",
    "seed": config.seed,
    "fractions": tuple(config.detector_split.fractions),
    "ood_fractions": tuple(config.detector_split.ood_fractions),
  }
  with detector.unlocked():
    detector.data.train_source = {**split, "role": "train"}
    detector.data.calibration_source = {**split, "role": "val"}
    detector.data.eval_source = {**split, "role": "test"}
    detector.eval.save_figures = False
  return detector


def score_external(
  config: ml_collections.ConfigDict, workdir: str, internal: dict, external: dict
) -> dict:
  """Trains (or reuses) the per-class detectors; scores each external image by its class's.

  Returns:
    `{"scores": [N_ext], "detector_results": {class name: report}}`; cached in `scores.npz`.
  """
  classes = np.unique(internal["class_id"])
  names = _class_names(internal, classes)
  path = os.path.join(workdir, "scores.npz")
  results = {}
  for position, class_id in enumerate(classes):
    name = names[int(class_id)]
    detector_dir = os.path.join(workdir, "detectors", name)
    what = f"detector {position + 1}/{len(classes)} ({name})"
    results[name] = _train(detector_config(config, class_id), detector_dir, what)
  if os.path.exists(path):
    with np.load(path) as saved:
      return {"scores": saved["scores"], "detector_results": results}
  unknown = sorted(set(np.unique(external["class_id"]).tolist()) - set(classes.tolist()))
  if unknown:
    raise ValueError(f"External classes {unknown} have no internal images to train a detector.")
  scores = np.zeros(len(external["class_id"]), np.float64)
  for position, class_id in enumerate(classes):
    members = np.flatnonzero(external["class_id"] == class_id)
    if not len(members):
      continue
    name = names[int(class_id)]
    _log("scoring %d external images of class %s (%d/%d)", len(members), name, position + 1,
         len(classes))  # fmt: skip
    detector = detector_config(config, class_id)
    scorer = CheckpointScorer(detector, os.path.join(workdir, "detectors", name))
    components = scorer.outputs(external["image"][members])
    score_fn = scorer.method.score_functions()[config.detector_score]
    scores[members] = np.asarray(score_fn(components, components), np.float64)
  np.savez(path, scores=scores)
  return {"scores": scores, "detector_results": results}


def _class_names(arrays: dict, classes) -> list[str]:
  names = list(arrays["class_names"])
  if not names:
    names = [str(c) for c in range(int(np.max(classes)) + 1)]
  return names


def group_external(config: ml_collections.ConfigDict, scores, class_ids) -> tuple[np.ndarray, int]:
  """Per-class groups 1 … k of the external scores, and k (see the module docstring)."""
  g = config.grouping
  classes = np.unique(class_ids)
  k = int(g.num_groups)
  if k == 0:
    elbows = [score_grouping.elbow_k(scores[class_ids == c], g.k_max) for c in classes]
    k = max(2, int(round(float(np.median(elbows)))))
    _log("elbow rule: per-class k %s → k = %d", elbows, k)
  groups = np.zeros(len(scores), np.int64)
  for c in classes:
    members = class_ids == c
    groups[members] = score_grouping.group_scores(scores[members], k, g.method)
  return groups, k


def _subset_source(base: ml_collections.ConfigDict, indices_file: str) -> dict:
  return {"name": "index_subset", "base": base.to_dict(), "indices_file": indices_file}


def _otdd(config, internal_features, internal_labels, features, labels) -> dict:
  o = config.otdd
  rounds = [
    otdd(
      internal_features, internal_labels, features, labels,
      epsilon=o.epsilon, max_samples=o.max_samples, min_class_count=o.min_class_count,
      inner_ot=o.inner_ot, seed=config.seed + r,
    )
    for r in range(o.rounds)
  ]  # fmt: skip
  distances = np.array([r.distance for r in rounds])
  return {
    "distance_mean": float(distances.mean()),
    "distance_std": float(distances.std()),
    "divergence_mean": float(np.mean([r.divergence for r in rounds])),
    "converged": bool(all(r.converged for r in rounds)),
  }


def otdd_features(config: ml_collections.ConfigDict, images: np.ndarray) -> np.ndarray:
  """`images: [N, H, W, C]` → `[N, D]` flattened pixels after `pixel_pool`× average pooling."""
  pool = int(config.otdd.pixel_pool)
  n, h, w, c = images.shape
  if h % pool or w % pool:
    raise ValueError(f"otdd.pixel_pool={pool} must divide the image size {h}×{w}.")
  pooled = images.reshape(n, h // pool, pool, w // pool, pool, c).mean(axis=(2, 4))
  return flatten_pixels(pooled)


def evaluate_levels(
  config: ml_collections.ConfigDict, workdir: str, internal: dict, external: dict, groups, k: int
) -> list[dict]:
  """Classifiers and OTDD for every level TOP k … TOP 1 (module docstring, steps 4–5)."""
  internal_cls_dir = os.path.join(workdir, "classifier_internal")
  internal_cls = _seeded(config.classifier, config.seed)
  with internal_cls.unlocked():
    internal_cls.data.train_source = config.internal.to_dict()
    internal_cls.data.eval_source = config.internal_test.to_dict()
  _train(internal_cls, internal_cls_dir, "classifier on the internal set")
  internal_features = otdd_features(config, internal["image"])
  shifted = external.get("shifted")
  rows = []
  for j in range(k, 0, -1):
    level_dir = os.path.join(workdir, "levels", f"top{j}")
    os.makedirs(level_dir, exist_ok=True)
    kept = np.flatnonzero(groups <= j)
    indices_file = os.path.join(level_dir, "indices.npy")
    np.save(indices_file, kept)
    subset = _subset_source(config.external, indices_file)
    row = {
      "level": f"TOP{j}",
      "kept": int(len(kept)),
      "removed": int(len(groups) - len(kept)),
    }
    if shifted is not None:
      row["removed_shifted"] = int(shifted.sum() - shifted[kept].sum())
      row["kept_shifted_fraction"] = float(shifted[kept].mean())
    _log("level TOP%d: %d kept, %d removed", j, row["kept"], row["removed"])
    retrained = _seeded(config.classifier, config.seed)
    with retrained.unlocked():
      retrained.data.train_source = subset
      retrained.data.eval_source = config.internal_test.to_dict()
    results = _train(retrained, os.path.join(level_dir, "classifier"), f"TOP{j} classifier")
    row["retrained_accuracy"] = results["accuracy"]
    row["retrained_macro_f1"] = results["macro_f1"]
    on_level = copy.deepcopy(internal_cls)
    with on_level.unlocked():
      on_level.data.eval_source = subset
    out = os.path.join(level_dir, "internal_classifier")
    results = _done(out) or evaluation.evaluate_checkpoint(
      on_level, internal_cls_dir, output_dir=out
    )
    row["internal_accuracy"] = results["accuracy"]
    row["internal_macro_f1"] = results["macro_f1"]
    otdd_path = os.path.join(level_dir, "otdd.json")
    if os.path.exists(otdd_path):
      with open(otdd_path) as f:
        distance = json.load(f)
    else:
      _log("TOP%d: OTDD (%d rounds)", j, config.otdd.rounds)
      distance = _otdd(
        config,
        internal_features,
        internal["class_id"],
        otdd_features(config, external["image"][kept]),
        external["class_id"][kept],
      )
      with open(otdd_path, "w") as f:
        json.dump(distance, f, indent=2)
    row.update({f"otdd_{key}": value for key, value in distance.items()})
    rows.append(row)
  return rows


def run_medshift(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The whole MedShift pipeline (module docstring); writes the report into `workdir`.

  Returns:
    `{"rows": [per-level dict], "k": k, "detection": {...} or None, "markdown": str, ...}`.
  """
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "medshift_config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  _log("loading the internal and external sets")
  internal = load_arrays(config.internal)
  external = load_arrays(config.external)
  _log("internal: %d images, external: %d images", len(internal["class_id"]),
       len(external["class_id"]))  # fmt: skip
  scored = score_external(config, workdir, internal, external)
  scores = scored["scores"]
  groups, k = group_external(config, scores, external["class_id"])
  np.savez(os.path.join(workdir, "groups.npz"), groups=groups, scores=scores)
  rows = evaluate_levels(config, workdir, internal, external, groups, k)
  names = _class_names(internal, np.unique(internal["class_id"]))
  detection = medshift_report.detection_summary(scores, external, names)
  report = medshift_report.write_report(
    workdir, rows, k, config.grouping.method, detection, scored["detector_results"]
  )
  _log("done: %s", os.path.join(workdir, "matrix.md"))
  return {"rows": rows, "k": k, "detection": detection, "groups": groups, "scores": scores,
          **report}  # fmt: skip
