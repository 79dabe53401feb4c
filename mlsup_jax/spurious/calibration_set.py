"""CFR's calibration set, built from the training split by the ERM model (no group labels).

The authors' `generate.py` runs the ERM model over the **training** split (its variable is
misnamed `test_dataset`) and keeps:

* the **anchors**: every misclassified training sample, plus `correct_per_class` correctly
  classified samples drawn per class (their cmnist variant adds 20 a class);
* per class, the pool of correctly classified samples — an anchor's **positives** are drawn from
  its class's pool at every step (`projection_head.train_cfr`);
* per anchor, `negatives` samples of the *other* classes, the nearest to it by cosine similarity
  of the frozen features (`negative_mode="hard_other_class"`, default).

The released data loader computes those hard negatives and then overwrites them with random
samples of the anchor's **own** class (`negative = self.all_class_embeddings[contra_y]`, a
leftover that makes the contrast push an anchor away from its own class).
`negative_mode="random_same_class"` reproduces it (drawn once here); the default follows the
computed, intended negatives.

Edge cases: when the ERM model made no mistakes the anchors are the drawn correct samples only
(a warning; with `correct_per_class = 0` that leaves nothing, a ValueError). A class without a
single correctly classified sample has no positives: ValueError.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from absl import logging

__all__ = ["NEGATIVE_MODES", "CalibrationSet", "build_calibration_set"]

NEGATIVE_MODES = ("hard_other_class", "random_same_class")


@dataclasses.dataclass(frozen=True)
class CalibrationSet:
  """Indices into the training split (module docstring).

  Attributes:
    anchors: `[M]` anchor indices (mistakes first, then the drawn correct samples).
    num_mistakes: how many anchors are mistakes.
    positive_pool: `[C, Pmax]` indices of correctly classified samples per class (rows padded
      by repeating their own entries).
    positive_counts: `[C]` valid entries per row.
    negatives: `[M, K]` negative indices per anchor.
  """

  anchors: np.ndarray
  num_mistakes: int
  positive_pool: np.ndarray
  positive_counts: np.ndarray
  negatives: np.ndarray


def _unit(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def build_calibration_set(
  features: np.ndarray,
  labels: np.ndarray,
  predictions: np.ndarray,
  *,
  correct_per_class: int,
  negatives: int,
  negative_mode: str = "hard_other_class",
  seed: int = 0,
  num_classes: int = 2,
) -> CalibrationSet:
  """The calibration set of the ERM model's training-split `predictions` (module docstring).

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.spurious.calibration_set import build_calibration_set
    >>> x = np.eye(4, dtype=np.float32); y = np.array([0, 0, 1, 1])
    >>> calib = build_calibration_set(x, y, np.array([0, 1, 1, 1]), correct_per_class=1,
    ...                               negatives=2)
    >>> calib.anchors[:calib.num_mistakes].tolist(), calib.negatives.shape
    ([1], (3, 2))

  Args:
    features: `[N, F]` frozen training features (for the hard negatives).
    labels: `[N]` true classes. predictions: `[N]` the ERM model's classes.
    correct_per_class: correctly classified anchors drawn per class (capped by availability).
    negatives: K negatives per anchor.
    negative_mode: one of `NEGATIVE_MODES`.
    seed: the draws.
    num_classes: C.

  Raises:
    ValueError: bad shapes or mode, an empty calibration set, or a class with no correctly
      classified sample.
  """
  features = np.asarray(features, np.float32)
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  if features.ndim != 2 or labels.shape != predictions.shape or labels.shape != features.shape[:1]:
    raise ValueError(
      f"features [N, F], labels [N] and predictions [N] expected; got {features.shape}, "
      f"{labels.shape}, {predictions.shape}."
    )
  if negative_mode not in NEGATIVE_MODES:
    raise ValueError(f"negative_mode must be one of {NEGATIVE_MODES}, got {negative_mode!r}.")
  if int(negatives) < 1:
    raise ValueError(f"negatives must be ≥ 1, got {negatives}.")
  rng = np.random.default_rng(seed)
  correct = predictions == labels
  mistakes = np.flatnonzero(~correct)
  pools = []
  for c in range(num_classes):
    pool = np.flatnonzero(correct & (labels == c))
    if not len(pool):
      raise ValueError(
        f"No training sample of class {c} is classified correctly by the ERM model, so CFR has "
        "no positives for it; train the ERM model longer."
      )
    pools.append(pool)
  drawn = [rng.choice(p, size=min(int(correct_per_class), len(p)), replace=False) for p in pools]
  anchors = np.concatenate([mistakes, *drawn]).astype(np.int32)
  if not len(anchors):
    raise ValueError(
      "The calibration set is empty: the ERM model made no mistakes on the training split and "
      "correct_per_class is 0. Set correct_per_class > 0 (or use a weaker ERM model)."
    )
  if not len(mistakes):
    logging.warning(
      "The ERM model made no mistakes on the training split: the calibration set holds only "
      "%d correctly classified samples.",
      len(anchors),
    )
  width = max(len(p) for p in pools)
  pool_array = np.stack([np.resize(p, width) for p in pools]).astype(np.int32)
  counts = np.asarray([len(p) for p in pools], np.int32)

  k = int(negatives)
  rows = []
  if negative_mode == "hard_other_class":
    unit = _unit(features)
    for index in anchors:
      others = np.flatnonzero(labels != labels[index])
      if not len(others):
        raise ValueError("Hard negatives need at least two classes in the training split.")
      similarity = unit[others] @ unit[index]
      order = others[np.argsort(-similarity, kind="stable")]
      rows.append(np.resize(order[:k], k))
  else:
    for index in anchors:
      same = np.flatnonzero(labels == labels[index])
      rows.append(rng.choice(same, size=k, replace=len(same) < k))
  return CalibrationSet(
    anchors=anchors,
    num_mistakes=int(len(mistakes)),
    positive_pool=pool_array,
    positive_counts=counts,
    negatives=np.stack(rows).astype(np.int32),
  )
