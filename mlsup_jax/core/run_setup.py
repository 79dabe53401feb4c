"""Builds what a run needs from its config: the method, the mesh, shardings and the state.

Shared by training (`trainer.py`) and stand-alone evaluation (`evaluation.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core.method import Method, Stage
from mlsup_jax.core.registry import METHODS
from mlsup_jax.core.state import TrainState
from mlsup_jax.data import pipeline


def build_method(config: ml_collections.ConfigDict) -> Method:
  return METHODS.get(config.method)(config)


def stage_starts(stages: Sequence[Stage]) -> list[int]:
  """Global step at which each stage begins."""
  return [int(s) for s in np.cumsum([0] + [stage.num_steps for stage in stages])[:-1]]


def enter_stage(state: TrainState, stage: Stage) -> TrainState:
  """Pure: the stage's `prepare`, then fresh optimizer state for its optimizer."""
  if stage.prepare is not None:
    state = stage.prepare(state)
  return state.replace(opt_state=stage.optimizer.init(state.params))


class RunSetup:
  """What training and evaluation build from a config: method, mesh, shardings, initial state."""

  def __init__(self, config: ml_collections.ConfigDict, devices=None):
    self.config = config
    self.method = build_method(config)
    self.stages = list(self.method.stages)
    self.starts = stage_starts(self.stages)
    self.total_steps = sum(stage.num_steps for stage in self.stages)
    self.mesh = mesh_lib.make_mesh(config.mesh, devices)
    if config.data.batch_size % self.mesh.devices.size:
      raise ValueError(
        f"config.data.batch_size={config.data.batch_size} must be divisible by the "
        f"{self.mesh.devices.size} devices of the mesh (the batch is split across them)."
      )
    self.batch_sharding = mesh_lib.batch_sharding(self.mesh)
    self.replicated = mesh_lib.replicated(self.mesh)
    root = jax.random.key(config.seed)
    self.init_rng, self.train_rng, self.eval_rng = jax.random.split(root, 3)
    # Built once: the example batch below and the trainer's iterator both read it.
    self.train_dataset = pipeline.train_dataset(config.data)
    self.example_local = self.train_dataset[0]
    self.example_batch = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(
        (x.shape[0] * jax.process_count(),) + x.shape[1:], x.dtype, sharding=self.batch_sharding
      ),
      self.example_local,
    )

  def state_for_stage(self, stage_index: int):
    """A pure function building the initial state as it is when `stage_index` begins."""

    def build(rng, batch):
      state = self.method.init(rng, batch)
      for stage in self.stages[1 : stage_index + 1]:
        state = enter_stage(state, stage)
      return state

    return build

  def state_shardings(self, stage_index: int):
    abstract = jax.eval_shape(self.state_for_stage(stage_index), self.init_rng, self.example_batch)
    return abstract, mesh_lib.state_shardings(abstract, self.mesh)

  def create_state(self, stage_index: int = 0):
    _, shardings = self.state_shardings(stage_index)
    init = jax.jit(self.state_for_stage(stage_index), out_shardings=shardings)
    return init(self.init_rng, mesh_lib.global_batch(self.example_local, self.mesh))

  def compile_step(self, stage: Stage, shardings):
    return jax.jit(
      stage.train_step,
      in_shardings=(shardings, self.batch_sharding, self.replicated),
      out_shardings=(shardings, self.replicated),
      donate_argnums=(0,),
    )

  def restore(self, checkpointer, step: int):
    """Restores `(state, data_state, stage_index)` of checkpoint `step`, sharded for this run."""
    stage_index = checkpointer.restore_meta(step)["stage_index"]
    abstract, shardings = self.state_shardings(stage_index)
    abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )
    state, data_state = checkpointer.restore(step, abstract)
    return state, data_state, stage_index
