"""Model selection on a validation source only, then one evaluation of the chosen checkpoint.

`select_and_test(config, workdir)` takes a finished run (any method) whose checkpoints were
kept (`config.train.keep_checkpoints` ≥ the number saved, every `train.checkpoint_every` steps),
evaluates every kept checkpoint on `config.data.selection_source` (the validation patients),
picks the best by `config.eval.select.metric` (`mode` "max" or "min"; ties go to the earlier
step), and evaluates that one checkpoint on `config.data.eval_source` (the test patients). The
test set is read once, after the choice — unlike code that keeps the checkpoint with the best
*test* score. Each evaluation is cached under `workdir/selection/step_<N>/` and
`workdir/selected/`, so re-running costs nothing; `workdir/selection.json` records every
checkpoint's validation score, the chosen step and its test results.
"""

from __future__ import annotations

import copy
import json
import math
import os

import jax
import ml_collections
from absl import logging

from mlsup_jax.core import evaluation, trainer
from mlsup_jax.core.checkpoint import Checkpointer


def _cached(output_dir: str) -> dict | None:
  path = os.path.join(output_dir, "eval_results.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  return None


def _evaluate(config, workdir: str, step: int, output_dir: str) -> dict[str, float]:
  return _cached(output_dir) or evaluation.evaluate_checkpoint(
    config, workdir, step=step, output_dir=output_dir
  )


def best_step(scores: dict[int, float], mode: str) -> int:
  """The step with the best finite score (`mode` "max" or "min"); the earliest on ties.

  Example:
    >>> from mlsup_jax.pipelines.model_selection import best_step
    >>> best_step({100: 0.7, 200: 0.9, 300: 0.9}, "max"), best_step({100: 2.0, 200: 1.5}, "min")
    (200, 200)
  """
  if mode not in ("max", "min"):
    raise ValueError(f"select mode must be 'max' or 'min', got {mode!r}.")
  finite = {s: v for s, v in scores.items() if math.isfinite(v)}
  if not finite:
    raise ValueError(f"No checkpoint has a finite selection score: {scores}.")
  sign = 1.0 if mode == "max" else -1.0
  return max(sorted(finite), key=lambda s: sign * finite[s])


def select_and_test(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Chooses a checkpoint of `workdir` on the validation source and tests it (module docstring).

  Args:
    config: the run's config, with `data.selection_source` and `eval.select = {metric, mode}`.
    workdir: the finished run.

  Returns:
    `{"metric", "mode", "scores": {step: validation score}, "best_step", "test": results}`.

  Raises:
    ValueError: no `selection_source`, or it is the evaluation source itself.
    FileNotFoundError: no checkpoint in `workdir`.
  """
  if config.data.get("selection_source") is None:
    raise ValueError("Model selection needs config.data.selection_source (validation data).")
  if config.data.selection_source.to_dict() == config.data.eval_source.to_dict():
    raise ValueError(
      "config.data.selection_source is the evaluation source: selecting on the test data would "
      "make the test score optimistic. Select on validation data."
    )
  metric, mode = config.eval.select.metric, config.eval.select.mode
  checkpointer = Checkpointer(workdir, config, write_config=False)
  try:
    steps = checkpointer.all_steps()
  finally:
    checkpointer.close()
  if not steps:
    raise FileNotFoundError(f"No checkpoint in {workdir} to select from.")

  on_validation = copy.deepcopy(config)
  with on_validation.unlocked():
    on_validation.data.eval_source = copy.deepcopy(config.data.selection_source)
  scores = {}
  for step in steps:
    out = os.path.join(workdir, "selection", f"step_{step}")
    results = _evaluate(on_validation, workdir, step, out)
    if metric not in results:
      raise KeyError(f"eval.select.metric {metric!r} is not reported; have {sorted(results)}.")
    scores[step] = float(results[metric])
  chosen = best_step(scores, mode)
  logging.info("Selected step %d on validation %s = %.4f.", chosen, metric, scores[chosen])
  test = _evaluate(config, workdir, chosen, os.path.join(workdir, "selected"))
  summary = {"metric": metric, "mode": mode, "scores": scores, "best_step": chosen, "test": test}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "selection.json"), "w") as f:
      json.dump(summary, f, indent=2, sort_keys=True)
  return summary


def train_and_select(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or resumes) the run, then returns the test results of the checkpoint chosen on the
  validation source, with `selected_step` — a seed grid's `run` (`pipelines/seed_grid.py`).

  Example:
    python -m launch.semi_supervised uses it for every cell of its grid.
  """
  trainer.train_and_evaluate(config, workdir)
  selection = select_and_test(config, workdir)
  return {**selection["test"], "selected_step": selection["best_step"]}
