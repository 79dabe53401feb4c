"""One supervised stage: a Flax model with `batch_stats`, one optimizer, one objective.

Methods whose training is "apply the model, score its outputs, take one optimizer step"
(MaxQuery, SCU-Net, the image classifier, the AE / VAE baselines) inherit `init` and
`train_step` from `SupervisedStage` and write only `objective`; swapping a loss means
overriding that one method (or editing `config.loss`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import optax

from mlsup_jax.core.method import Stage
from mlsup_jax.core.state import TrainState


class SupervisedStage:
  """Mixin: `init` and `train_step` for `self.model` trained by `self.optimizer`.

  The model is called as `model(image, train=...)`; its non-trainable `batch_stats` (empty when it
  has none) live in `state.model_state`.

  Class attributes:
    init_rng_names: the Flax RNG streams `init` draws; the init key is split among them (one name:
      the key itself).
    step_rng_name: the stream that receives the train step's key (dropout, VAE sampling, …).
  """

  init_rng_names: tuple[str, ...] = ("params", "dropout")
  step_rng_name: str = "dropout"
  model: nn.Module
  optimizer: optax.GradientTransformation

  def single_stage(self, num_steps: int) -> tuple[Stage]:
    """The method's `stages`: one stage named "train"."""
    return (Stage("train", num_steps, self.train_step, self.optimizer),)

  def objective(self, outputs: Any, batch: dict) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`(loss, scalar metrics)` of the model's training-mode `outputs` on `batch`."""
    raise NotImplementedError

  def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
    names = self.init_rng_names
    keys = [rng] if len(names) == 1 else list(jax.random.split(rng, len(names)))
    rngs = dict(zip(names, keys, strict=True))
    variables = self.model.init(rngs, example_batch["image"], train=False)
    return TrainState.create(
      params=variables["params"],
      optimizer=self.optimizer,
      model_state={"batch_stats": variables.get("batch_stats", {})},
    )

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """`batch: image [B, *S, C]` + the objective's targets → updated state and scalar metrics."""

    def loss_fn(params):
      outputs, updates = self.model.apply(
        {"params": params, **state.model_state},
        batch["image"],
        train=True,
        rngs={self.step_rng_name: rng},
        mutable=["batch_stats"],
      )
      loss, metrics = self.objective(outputs, batch)
      return loss, (updates, metrics)

    (loss, (updates, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, optimizer=self.optimizer, model_state=updates)
    return state, {"loss": loss, **metrics}
