"""The Method / Stage interface every method implements.

A method is a class built from a config (`METHODS` in `mlsup_jax/methods/__init__.py`) with:

* `stages`: its `Stage`s, run in order by the one trainer (`core/trainer.py`);
* `batch_keys`: the example keys its training (per stream) and evaluation read (`BatchKeys`),
  checked against the first examples of every source before anything is compiled;
* `init`, `eval_step`, `evaluate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import jax
import ml_collections
import optax

from mlsup_jax import losses
from mlsup_jax.core.state import TrainState

Batch = dict[str, Any]
TrainStep = Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]
MAIN_STREAM = ""


@dataclasses.dataclass(frozen=True)
class Stage:
  """One phase of training with its own step function and optimizer.

  Attributes:
    name: shown in logs and used in metric names.
    num_steps: steps this stage runs.
    train_step: pure `(state, batch, rng) -> (state, metrics)`; metrics are scalars.
    optimizer: the optimizer whose state the trainer initialises when the stage begins.
    prepare: optional pure `state -> state` run once when the stage begins (before the optimizer
      state is re-initialised), e.g. to add a head or fix a centre. Two-stage methods (TEND,
      CVAD) need it, and it keeps the trainer method-agnostic.
    variants: optional named versions of `train_step` that the trainer picks between on the
      host, by the global step: `variant_of(step)` names the one to run (each compiled once).
      For steps whose work depends on the step number (MCPM's meta update every k steps): a
      `lax.cond` inside one step would do the same, but XLA's CPU backend runs the branches of
      a conditional without its fast convolution path (measured 20× slower convolutions,
      `docs/design.md`). Each variant must compute exactly what `train_step` computes at the
      steps it is chosen for; `train_step` stays the one-program form (multi-step dispatch,
      the benchmarks' one-program leg).
    variant_of: `step -> variant name`, required with `variants`.
  """

  name: str
  num_steps: int
  train_step: TrainStep
  optimizer: optax.GradientTransformation
  prepare: Callable[[TrainState], TrainState] | None = None
  variants: Mapping[str, TrainStep] | None = None
  variant_of: Callable[[int], str] | None = None


@dataclasses.dataclass(frozen=True)
class BatchKeys:
  """The example keys a method reads.

  Attributes:
    train: per training stream (`""` = the main stream, `config.data.train_source`; other names
      are `config.data.streams.<name>`), the keys its examples must hold.
    eval: the keys the examples of `config.data.eval_source` must hold.

  Keys a method only *uses when present* (a phantom's OOD flags, a BAC intensity map) are not
  listed: they unlock extra reports and are never required.
  """

  train: Mapping[str, tuple[str, ...]]
  eval: tuple[str, ...]

  def with_losses(
    self, loss_config: ml_collections.ConfigDict, roles: Mapping[str, losses.LossRole]
  ) -> BatchKeys:
    """These keys plus those the active loss terms of `roles` read (on each role's stream)."""
    train = {stream: set(keys) for stream, keys in self.train.items()}
    for stream, keys in losses.batch_keys(loss_config, roles).items():
      train.setdefault(stream, set()).update(keys)
    return BatchKeys({s: tuple(sorted(k)) for s, k in train.items()}, tuple(self.eval))


class Method(Protocol):
  """A training method: its stages, the keys it reads, its initial state, and evaluation."""

  stages: Sequence[Stage]
  batch_keys: BatchKeys

  def init(self, rng: jax.Array, example_batch: Batch) -> TrainState: ...

  def eval_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> dict[str, jax.Array]:
    """Per-example outputs; every value has the batch as its leading axis."""
    ...

  def evaluate(
    self, outputs: Iterable[dict[str, Any]], workdir: str | None = None
  ) -> dict[str, float]:
    """Host-side metrics from the per-example outputs of the whole evaluation set.

    A method may also write figures and reports under `workdir` when it is given.
    """
    ...
