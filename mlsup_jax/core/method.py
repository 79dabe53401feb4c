"""The Method / Stage interface every method implements (DESIGN §2)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import jax
import optax

from mlsup_jax.core.state import TrainState

Batch = dict[str, Any]
TrainStep = Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class Stage:
  """One phase of training with its own step function and optimizer.

  Attributes:
    name: shown in logs and used in metric names.
    num_steps: steps this stage runs.
    train_step: pure `(state, batch, rng) -> (state, metrics)`; metrics are scalars.
    optimizer: the optimizer whose state the trainer initialises when the stage begins.
    prepare: optional pure `state -> state` run once when the stage begins (before the optimizer
      state is re-initialised), e.g. to add a head or fix a centre. Deviation from DESIGN §2's
      four fields: two-stage methods (TEND, CVAD) need it and it keeps the trainer agnostic.
  """

  name: str
  num_steps: int
  train_step: TrainStep
  optimizer: optax.GradientTransformation
  prepare: Callable[[TrainState], TrainState] | None = None


class Method(Protocol):
  """A training method: its stages, initial state, and evaluation."""

  stages: Sequence[Stage]

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
