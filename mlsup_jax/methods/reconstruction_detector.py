"""Reconstruction-based anomaly baselines: the auto-encoder [35] and the plain VAE [9] (spec S5.8).

One stage: the network (`model.name`: "autoencoder" or "vae", `nn/autoencoder.py`, `nn/vae.py`)
learns to reconstruct ID images with `loss.terms` ("reconstruction_mse" for the AE, "vae" for
the VAE: MSE + KL, normalised as in CVAD's code). Scores (`ood/detection_protocol.py`):

* `reconstruction` — the per-image reconstruction MSE (z = μ for the VAE);
* `vae_loss` — for the VAE, the per-image loss it was trained with (MSE + normalised KL).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from mlsup_jax import losses
from mlsup_jax.core.method import Stage
from mlsup_jax.core.optimizers import build_optimizer
from mlsup_jax.core.registry import MODELS
from mlsup_jax.core.state import TrainState
from mlsup_jax.losses import anomaly
from mlsup_jax.ood import detection_protocol

NETWORKS = ("autoencoder", "vae")


class ReconstructionDetector:
  """An AE or VAE trained on ID images; the reconstruction error is the anomaly score."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    m = config.model
    if m.name not in NETWORKS:
      raise ValueError(f"model.name must be one of {NETWORKS} for this method, got {m.name!r}.")
    kwargs = {"base_width": m.base_width, "depth": m.depth, "dtype": jnp.dtype(m.dtype)}
    if m.name == "vae":
      kwargs["latent_dim"] = m.latent_dim
    self.model = MODELS.get(m.name)(activation=m.activation, **kwargs)
    self.optimizer = build_optimizer(config.optimizer, config.train.num_steps)
    self.stages = (Stage("train", config.train.num_steps, self.train_step, self.optimizer),)

  def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
    params_rng, sample_rng = jax.random.split(rng)
    variables = self.model.init(
      {"params": params_rng, "sample": sample_rng}, example_batch["image"], train=False
    )
    return TrainState.create(
      params=variables["params"],
      optimizer=self.optimizer,
      model_state={"batch_stats": variables.get("batch_stats", {})},
    )

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """`batch: image [B, H, W, C]` in [0, 1] → one reconstruction update."""

    def loss_fn(params):
      outputs, updates = self.model.apply(
        {"params": params, **state.model_state},
        batch["image"],
        train=True,
        rngs={"sample": rng},
        mutable=["batch_stats"],
      )
      loss, metrics = losses.weighted_sum(self.config.loss, outputs=outputs, batch=batch)
      return loss, (updates, metrics)

    (loss, (updates, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, optimizer=self.optimizer, model_state=updates)
    return state, {"loss": loss, **metrics}

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    """Per-image components: `reconstruction_error` (and `vae_loss`), `ood` [B]."""
    del rng  # Evaluation is deterministic (z = μ).
    image = batch["image"]
    outputs = self.model.apply({"params": state.params, **state.model_state}, image, train=False)
    result = {
      "reconstruction_error": anomaly.reconstruction_error(outputs["reconstruction"], image),
      "ood": batch["ood"],
    }
    if "mu" in outputs:
      hparams = self.config.loss.vae.to_dict()
      result["vae_loss"] = anomaly.vae_example_loss(
        outputs["reconstruction"], image, outputs["mu"], outputs["logvar"], **hparams
      )
    return result

  def score_functions(self) -> dict:
    scores = {"reconstruction": lambda c, r: c["reconstruction_error"]}
    if self.config.model.name == "vae":
      scores["vae_loss"] = lambda c, r: c["vae_loss"]
    return scores

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    return detection_protocol.report(
      outputs, self.score_functions(), self.config.eval, workdir, self.config.model.name
    )
