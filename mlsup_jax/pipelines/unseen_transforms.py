"""Tables 4.5–4.6: ACC on unseen transformations — how many transformed ID images are flagged.

For each validation-only transform of `data/augmentation/distortions.py`
(`UNSEEN_TRANSFORMS`: random cut, random crop & resize, additive noise, Gaussian blur) the ID
test images are transformed (evaluation transform `unseen_transform_image`, seeded per image)
and scored by the trained detector. ACC = the fraction of them with score ≥ t*, where t* is the
score's clean-protocol threshold from the untransformed evaluation (G-mean on the validation
split): a detector that generalises beyond its training distortions flags them as novel. The
thesis writes ACC as TN / (TN + FP) with the transformed images as the novel class (spec S5,
Tables 4.5–4.6); which ID images it transformed is not stated — here, the ID images of the test
split.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence

import ml_collections
import numpy as np

from mlsup_jax.core import evaluation
from mlsup_jax.data.augmentation.distortions import UNSEEN_TRANSFORMS


def unseen_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """`config` whose evaluation images are replaced by `name`-transformed copies."""
  if name not in UNSEEN_TRANSFORMS:
    raise KeyError(f"Unknown unseen transform {name!r}. Known: {', '.join(UNSEEN_TRANSFORMS)}.")
  config = copy.deepcopy(config)
  with config.unlocked():
    config.data.unseen_transform = name
    config.data.eval_transforms = (*config.data.eval_transforms, "unseen_transform_image")
    config.eval.save_figures = False
  return config


def flagged_fraction(scores: np.ndarray, ood: np.ndarray, threshold: float) -> float:
  """Fraction of the ID rows (`ood == 0`) of `scores [N]` at or above `threshold`."""
  scores, is_id = np.asarray(scores, np.float64), np.asarray(ood) == 0
  if not is_id.any():
    raise ValueError("No ID images among the scored ones: nothing to measure ACC on.")
  return float(np.mean(scores[is_id] >= threshold))


def evaluate_unseen(
  configs: Mapping[str, ml_collections.ConfigDict],
  results: Mapping[str, Mapping[str, float]],
  workdir: str,
  rows: Sequence[tuple[str, str, str]],
  names: Sequence[str] = UNSEEN_TRANSFORMS,
) -> dict[str, dict[str, float]]:
  """Evaluates every trained run on every transform; returns row → transform → ACC.

  Args:
    configs: run name → config (trained in `workdir/<run>`).
    results: run name → its untransformed evaluation (holds `<score>/threshold`).
    workdir: the study folder; reports go to `workdir/<run>/unseen_<name>`.
    rows: `(row name, run, score)` triples (the study's `ROWS`).
    names: the transforms.
  """
  table: dict[str, dict[str, float]] = {}
  for run, config in configs.items():
    for name in names:
      output_dir = os.path.join(workdir, run, f"unseen_{name}")
      evaluation.evaluate_checkpoint(
        unseen_config(config, name), os.path.join(workdir, run), output_dir=output_dir
      )
      # The method's report saved every score of the transformed images (`<run>_scores.npz`).
      with np.load(os.path.join(output_dir, f"{run}_scores.npz")) as saved:
        for row, row_run, score in rows:
          threshold = results[run].get(f"{score}/threshold")
          if row_run == run and score in saved and threshold is not None:
            acc = flagged_fraction(saved[score], saved["ood"], threshold)
            table.setdefault(row, {})[name] = acc
  return table
