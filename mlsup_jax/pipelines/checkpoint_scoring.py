"""Runs a trained method's `eval_step` on in-memory images (MedShift scores external data).

`evaluation.evaluate_checkpoint` evaluates a checkpoint on a configured source and then calls
the method's own report; MedShift instead needs the raw per-image outputs (a detector's score
components) of arbitrary image subsets, with no labels. This module restores the newest
checkpoint of a workdir once and applies the jitted `eval_step` to fixed-size padded batches.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core.checkpoint import Checkpointer
from mlsup_jax.core.run_setup import RunSetup


class CheckpointScorer:
  """A restored method whose `eval_step` can be applied to image arrays.

  Args:
    config: the method config the workdir was trained with.
    workdir: a finished training workdir (its newest checkpoint is restored).
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.run = RunSetup(config)
    checkpointer = Checkpointer(workdir, config, max_to_keep=config.train.keep_checkpoints)
    try:
      step = checkpointer.latest_step()
      if step is None:
        raise FileNotFoundError(f"No checkpoint in {checkpointer.directory} to score with.")
      self.state, _, _ = self.run.restore(checkpointer, step)
    finally:
      checkpointer.close()
    self.method = self.run.method
    shards = self.run.mesh.devices.size
    # Padded to a multiple of the mesh size, as the evaluation loop does.
    self.batch_size = -(-config.eval.batch_size // shards) * shards
    self._step = jax.jit(
      self.method.eval_step, out_shardings=mesh_lib.batch_sharding(self.run.mesh)
    )

  def outputs(self, images: np.ndarray, extra: dict | None = None) -> dict[str, np.ndarray]:
    """`eval_step` outputs of every image.

    Args:
      images: `[N, H, W, C]` float32.
      extra: other per-example `[N, …]` batch keys the method's `eval_step` reads; a method
        that reads `ood` gets zeros unless it is given here.

    Returns:
      Every per-example output, `[N, …]` numpy.
    """
    images = np.asarray(images, np.float32)
    extra = dict(extra or {})
    extra.setdefault("ood", np.zeros(len(images), np.int32))
    gathered: dict[str, list[np.ndarray]] = {}
    rng = self.run.eval_rng
    for index, start in enumerate(range(0, len(images), self.batch_size)):
      stop = min(start + self.batch_size, len(images))
      # Pad the last batch with copies of its first row so the step compiles once.
      take = np.concatenate(
        [np.arange(start, stop), np.full(self.batch_size - (stop - start), start)]
      )
      batch = {"image": images[take], **{k: np.asarray(v)[take] for k, v in extra.items()}}
      batch["valid"] = (np.arange(self.batch_size) < stop - start).astype(np.int32)
      result = jax.device_get(
        self._step(
          self.state, mesh_lib.global_batch(batch, self.run.mesh), jax.random.fold_in(rng, index)
        )
      )
      for key, value in result.items():
        gathered.setdefault(key, []).append(np.asarray(value)[: stop - start])
    return {key: np.concatenate(values) for key, values in gathered.items()}
