"""Evaluation: run `method.eval_step` over the eval set, then `method.evaluate` on the host."""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core.checkpoint import Checkpointer
from mlsup_jax.core.method import Method
from mlsup_jax.core.run_setup import RunSetup
from mlsup_jax.data import pipeline


def _host(tree):
  """Fetches (and on multi-host, gathers) a pytree of global arrays as numpy."""
  if jax.process_count() > 1:
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def _run_eval_step(eval_step, state, config, mesh, rng, source_key: str) -> dict[str, np.ndarray]:
  """`eval_step` over one pass of `config.data[source_key]`; outputs concatenated on the host."""
  gathered: dict[str, list[np.ndarray]] = {}
  # Round the batch up to a multiple of the mesh size; the padding rows have `valid = 0`.
  shards = mesh.devices.size
  batch_size = -(-config.eval.batch_size // shards) * shards
  for index, local_batch in enumerate(pipeline.eval_batches(config.data, batch_size, source_key)):
    batch = mesh_lib.global_batch(local_batch, mesh)
    outputs = _host(eval_step(state, batch, jax.random.fold_in(rng, index)))
    valid = np.asarray(_host(batch["valid"])).astype(bool)
    for key, value in outputs.items():
      gathered.setdefault(key, []).append(np.asarray(value)[valid])
  return {key: np.concatenate(values) for key, values in gathered.items()}


def evaluate(
  method: Method, state, config: ml_collections.ConfigDict, mesh, rng, workdir: str | None
) -> dict[str, float]:
  """Runs `method.eval_step` over the eval set and `method.evaluate` on the gathered outputs."""
  eval_step = jax.jit(method.eval_step, out_shardings=mesh_lib.batch_sharding(mesh))
  outputs = _run_eval_step(eval_step, state, config, mesh, rng, "eval_source")
  if "calibration_source" in config.data:
    # Post-hoc scores (e.g. SML) fit statistics on training images: the method receives that
    # pass's outputs under "calibration".
    calibration_rng = jax.random.fold_in(rng, 1 << 20)
    outputs["calibration"] = _run_eval_step(
      eval_step, state, config, mesh, calibration_rng, "calibration_source"
    )
  results = {k: float(v) for k, v in method.evaluate(outputs, workdir).items()}
  if workdir is not None and jax.process_index() == 0:
    with open(os.path.join(workdir, "eval_results.json"), "w") as f:
      json.dump(results, f, indent=2, sort_keys=True)
  return results


def evaluate_checkpoint(
  config: ml_collections.ConfigDict,
  workdir: str,
  step: int | None = None,
  output_dir: str | None = None,
) -> dict[str, float]:
  """Restores checkpoint `step` (default: newest) of `workdir` and evaluates it.

  Reports and figures go to `output_dir` (created; default `workdir`), so one trained model can
  be evaluated on other evaluation sets (e.g. inter-class OOD) without overwriting its report.
  """
  run = RunSetup(config)
  config = run.config
  checkpointer = Checkpointer(
    workdir, config, max_to_keep=config.train.keep_checkpoints, write_config=False
  )
  try:
    step = checkpointer.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {checkpointer.directory} to evaluate.")
    state, _, _ = run.restore(checkpointer, step)
    output_dir = workdir if output_dir is None else output_dir
    os.makedirs(output_dir, exist_ok=True)
    return evaluate(run.method, state, config, run.mesh, run.eval_rng, output_dir)
  finally:
    checkpointer.close()
