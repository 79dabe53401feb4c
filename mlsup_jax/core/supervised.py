"""`SupervisedMethod`: the base of methods trained as one network, one optimizer, one objective.

Methods whose training is "apply the model, score its outputs, take one optimizer step"
(segmentation, MaxQuery, SCU-Net, the image classifier, the AE / VAE baselines) inherit `init`
and `train_step` from `SupervisedMethod` and write only `objective`; swapping a loss is a config
line (`config.loss`), never an override here.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import optax

from mlsup_jax import losses
from mlsup_jax.core.method import MAIN_STREAM, BatchKeys, Stage
from mlsup_jax.core.networks import apply_network, init_network
from mlsup_jax.core.optimizers import build_optimizer
from mlsup_jax.core.state import TrainState


class SupervisedMethod:
  """Mix-in: `init` and `train_step` for `self.model` trained by `self.optimizer`.

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

  def configure(
    self,
    config,
    loss_roles: dict,
    model: nn.Module,
    train_keys: tuple[str, ...] = ("image", "label"),
    eval_keys: tuple[str, ...] = ("image", "label"),
  ) -> None:
    """The set-up every such method shares: `config.loss` checked against `loss_roles`, the
    model, `config.optimizer`, one stage of `config.train.num_steps`, and the batch keys (plus
    those the active loss terms read)."""
    losses.check_loss_config(config.loss, loss_roles)
    self.config = config
    self.loss_roles = loss_roles
    self.model = model
    self.optimizer = build_optimizer(config.optimizer, config.train.num_steps)
    self.stages = (Stage("train", config.train.num_steps, self.train_step, self.optimizer),)
    self.batch_keys = BatchKeys({MAIN_STREAM: tuple(train_keys)}, tuple(eval_keys)).with_losses(
      config.loss, loss_roles
    )

  def objective(self, outputs: Any, batch: dict) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`(loss, scalar metrics)` of the model's training-mode `outputs` on `batch`."""
    raise NotImplementedError

  def network_inputs(self, batch: dict) -> dict:
    """Further keyword inputs of the model in training mode (none by default; Mask R-CNN reads
    the instance map there to sample its targets)."""
    del batch
    return {}

  def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
    params, model_state = init_network(self.model, rng, example_batch["image"], self.init_rng_names)
    return TrainState.create(params=params, optimizer=self.optimizer, model_state=model_state)

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """`batch: image [B, *S, C]` + the objective's targets → updated state and scalar metrics."""

    def loss_fn(params):
      outputs, model_state = apply_network(
        self.model,
        params,
        state.model_state,
        batch["image"],
        train=True,
        rngs={self.step_rng_name: rng},
        **self.network_inputs(batch),
      )
      loss, metrics = self.objective(outputs, batch)
      return loss, (model_state, metrics)

    (loss, (model_state, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, optimizer=self.optimizer, model_state=model_state)
    return state, {"loss": loss, **metrics}
