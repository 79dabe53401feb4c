"""Builds what a run needs from its config: the method, the mesh, shardings and the state.

Shared by training (`trainer.py`) and stand-alone evaluation (`evaluation.py`). Before anything
is compiled it resolves the config (`config_resolution.py`) and checks that the first examples of
every training stream and of every evaluation source hold the keys the method declares
(`Method.batch_keys`), naming the source and the missing key.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core.config_resolution import resolve_config
from mlsup_jax.core.method import MAIN_STREAM, BatchKeys, Method, Stage
from mlsup_jax.core.state import TrainState
from mlsup_jax.data import pipeline
from mlsup_jax.data.validation import DataError
from mlsup_jax.methods import METHODS

# Evaluation sources whose examples go through `eval_step` (calibration: SML's training pass).
EVAL_SOURCES = ("eval_source", "calibration_source")


def build_method(config: ml_collections.ConfigDict) -> Method:
  return METHODS.get(config.method)(config)


def check_keys(example: dict, needed, where: str, method: str, purpose: str) -> None:
  """Raises `DataError` naming `where` and the keys of `needed` that `example` lacks."""
  missing = sorted(set(needed) - set(example))
  if missing:
    present = sorted(k for k, v in example.items() if not isinstance(v, dict))
    raise DataError(
      f"{where} gives examples without {missing}, which method {method!r} needs for {purpose}; "
      f"its examples have {present}."
    )


def check_batch_keys(config: ml_collections.ConfigDict, keys: BatchKeys, first_batch: dict):
  """The first training batch and the first example of every evaluation source hold `keys`."""
  specs = {spec.name: spec for spec in pipeline.stream_specs(config.data)}
  for stream, needed in keys.train.items():
    if stream not in specs:
      raise ValueError(
        f"Method {config.method!r} trains on a stream {stream!r}: add config.data.streams."
        f"{stream} (streams now: {sorted(s for s in specs if s)})."
      )
    spec = specs[stream]
    example = first_batch if stream == MAIN_STREAM else first_batch[stream]
    where = f"{spec.where} ({spec.source['name']!r})"
    check_keys(example, needed, where, config.method, "training")
  for key in EVAL_SOURCES:
    if key in config.data:
      example = pipeline.first_eval_example(config.data, key)
      where = f"config.data.{key} ({config.data[key].name!r})"
      check_keys(example, keys.eval, where, config.method, "evaluation")


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
    config = resolve_config(config)
    self.config = config
    self.method = build_method(config)
    self.stages = list(self.method.stages)
    self.starts = stage_starts(self.stages)
    self.total_steps = sum(stage.num_steps for stage in self.stages)
    self.mesh = mesh_lib.make_mesh(config.mesh, devices)
    for spec in pipeline.stream_specs(config.data):
      if spec.batch_size % self.mesh.devices.size:
        name = "config.data.batch_size" if spec.name == MAIN_STREAM else f"{spec.where}.batch_size"
        raise ValueError(
          f"{name}={spec.batch_size} must be divisible by the {self.mesh.devices.size} devices "
          "of the mesh (the batch is split across them)."
        )
    self.batch_sharding = mesh_lib.batch_sharding(self.mesh)
    self.replicated = mesh_lib.replicated(self.mesh)
    root = jax.random.key(config.seed)
    self.init_rng, self.train_rng, self.eval_rng = jax.random.split(root, 3)
    # Built once: the example batch below and the trainer's iterator both read it.
    self.train_dataset = pipeline.train_dataset(config.data)
    self.example_local = self.train_dataset[0]
    check_batch_keys(config, self.method.batch_keys, self.example_local)
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

  def compile_step(self, stage: Stage, shardings, train_step=None):
    """The jitted, sharded, state-donating step (`train_step`, default the stage's)."""
    return jax.jit(
      stage.train_step if train_step is None else train_step,
      in_shardings=(shardings, self.batch_sharding, self.replicated),
      out_shardings=(shardings, self.replicated),
      donate_argnums=(0,),
    )

  def compile_steps(self, stage: Stage, shardings, length: int, unroll: int = 0):
    """`length` train steps in one dispatch: `(state, batches [length, B, …], rng, first_step)`
    → `(state, metrics [length, …])`, a `lax.scan` of the stage's step with step `s`'s key
    `fold_in(rng, s)` — the keys of `length` single steps, so the results are theirs.

    `unroll`: steps per loop iteration (0 = all: straight-line code). A rolled loop compiles
    faster but runs its body without the parallel convolution path on XLA's CPU backend
    (measured: 12× slower per SCU-Net smoke step) and tests its condition every iteration.
    """

    def steps(state, batches, rng, first_step):
      def body(state, inputs):
        batch, offset = inputs
        return stage.train_step(state, batch, jax.random.fold_in(rng, first_step + offset))

      return jax.lax.scan(
        body,
        state,
        (batches, jnp.arange(length, dtype=jnp.int32)),
        unroll=length if unroll <= 0 else min(unroll, length),
      )

    return jax.jit(
      steps,
      in_shardings=(
        shardings,
        mesh_lib.stacked_batch_sharding(self.mesh),
        self.replicated,
        self.replicated,
      ),
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
