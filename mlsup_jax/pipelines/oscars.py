"""OSCARS end to end: detectors → anomaly scores → pseudo intra-class bins → retrieval rows.

Spec: thesis_ch5_6 §3 (`configs/oscars.py` describes the steps). `prepare_annotations(config,
workdir)` reuses MedShift's detector and grouping steps (`pipelines/medshift.py`: per-class
detectors trained on the internal site, every external image scored by its class's detector,
1-D k-means bins per class) and writes

* `annotations/train.npz`: `bin [N]` (0 … B−1, 0 = least anomalous) and `anomaly [N]` of the
  external training split;
* `annotations/eval.npz`: `anomaly [M]` and `query [M]` (the first `query_fraction` of the
  external evaluation split) of the evaluation split;
* `annotations/summary.json`: B, the detectors' AUROC for the injected shifts per split, and the
  bins' shifted share (how much the pseudo labels say about the real outliers).

`retrieval_config(config, row, workdir)` is `configs/embedding_retrieval.py` for that row with
those files. Re-running reuses trained detectors and written annotations.
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np
from absl import logging
from sklearn.metrics import roc_auc_score

from configs import embedding_retrieval
from mlsup_jax.pipelines import medshift

__all__ = ["ROWS", "prepare_annotations", "retrieval_config", "squash"]


def squash(scores, class_ids, reference) -> np.ndarray:
  """Per class: z-score against `reference` (bool mask of the images whose statistics are
  used), then a sigmoid → A ∈ (0, 1)."""
  scores, class_ids = np.asarray(scores, np.float64), np.asarray(class_ids)
  out = np.zeros_like(scores)
  for c in np.unique(class_ids):
    members = class_ids == c
    ref = scores[members & reference]
    if not len(ref):
      ref = scores[members]
    z = (scores[members] - ref.mean()) / max(ref.std(), 1e-12)
    out[members] = 1.0 / (1.0 + np.exp(-z))
  return out


def _auroc(flags, scores) -> float | None:
  flags = np.asarray(flags).astype(bool)
  return float(roc_auc_score(flags, scores)) if 0 < flags.sum() < len(flags) else None


def prepare_annotations(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Steps 1–3 (module docstring); returns the summary."""
  folder = os.path.join(workdir, "annotations")
  summary_path = os.path.join(folder, "summary.json")
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      return json.load(f)
  os.makedirs(folder, exist_ok=True)
  internal = medshift.load_arrays(config.internal)
  train = medshift.load_arrays(config.external)
  evaluation = medshift.load_arrays(config.external_eval)
  n_train = len(train["class_id"])
  both = {
    key: np.concatenate([train[key], evaluation[key]])
    for key in ("image", "class_id", "shifted")
    if key in train
  }
  scores = medshift.score_external(config, workdir, internal, both)["scores"]
  is_train = np.arange(len(scores)) < n_train
  class_ids = both["class_id"]
  groups, k = medshift.group_external(config, scores[is_train], class_ids[is_train])
  anomaly = squash(scores, class_ids, is_train)
  n_eval = len(scores) - n_train
  query = np.arange(n_eval) < max(1, int(round(config.query_fraction * n_eval)))
  np.savez(os.path.join(folder, "train.npz"), bin=(groups - 1).astype(np.int32),
           anomaly=anomaly[is_train].astype(np.float32))  # fmt: skip
  np.savez(os.path.join(folder, "eval.npz"), anomaly=anomaly[~is_train].astype(np.float32),
           query=query.astype(np.int32))  # fmt: skip
  summary = {"bins": int(k), "num_train": int(n_train), "num_eval": int(n_eval)}
  if "shifted" in both:
    shifted = both["shifted"].astype(bool)
    summary["detector_auroc/train"] = _auroc(shifted[is_train], scores[is_train])
    summary["detector_auroc/eval"] = _auroc(shifted[~is_train], scores[~is_train])
    summary["shifted_share_per_bin"] = [
      float(np.mean(shifted[is_train][groups == g])) if np.any(groups == g) else None
      for g in range(1, k + 1)
    ]
  with open(summary_path, "w") as f:
    json.dump(summary, f, indent=2)
  logging.info("[oscars] annotations: %s", summary)
  return summary


# Row name → `configs/embedding_retrieval.py` options.
ROWS = {
  "oscars": "loss=oscars",
  "triplet": "loss=triplet",
  "supcon": "loss=supcon",
  "multi_similarity": "loss=multi_similarity",
  "circle": "loss=circle",
  "fastap": "loss=fastap",
  "oscars_lambda0.5": "loss=oscars,intra=0.5",  # the λ ablation (thesis Fig. 6.4)
}


def retrieval_config(config: ml_collections.ConfigDict, row: str, workdir: str):
  """`configs/embedding_retrieval.py:<row's options>` (at the pipeline's size) on the
  annotations."""
  if row not in ROWS:
    raise ValueError(f"Unknown row {row!r}; expected one of {list(ROWS)}.")
  options = ",".join(filter(None, [config.retrieval_options, ROWS[row]]))
  retrieval = embedding_retrieval.get_config(options)
  folder = os.path.abspath(os.path.join(workdir, "annotations"))
  with retrieval.unlocked():
    retrieval.data.train_source.arrays_file = os.path.join(folder, "train.npz")
    retrieval.data.eval_source.arrays_file = os.path.join(folder, "eval.npz")
    retrieval.data.train_source.base = config.external.to_dict()
    retrieval.data.eval_source.base = config.external_eval.to_dict()
  return retrieval
