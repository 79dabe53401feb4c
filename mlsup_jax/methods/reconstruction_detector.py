"""Reconstruction-based anomaly baselines: the auto-encoder [35] and the plain VAE [9] (spec S5.8).

One stage: the network (`model.name`: "autoencoder" or "vae", `nn/autoencoder.py`, `nn/vae.py`)
learns to reconstruct ID images with the `config.loss` terms ("reconstruction_mse" for the AE,
"vae" for the VAE: MSE + KL, normalised as in CVAD's code). Scores (`ood/detection_protocol.py`):

* `reconstruction` — the per-image reconstruction MSE (z = μ for the VAE);
* `vae_loss` — for the VAE, the per-image loss it was trained with (MSE + normalised KL).
"""

from __future__ import annotations

import jax
import ml_collections

from mlsup_jax import losses
from mlsup_jax.core.networks import apply_network
from mlsup_jax.core.state import TrainState
from mlsup_jax.core.supervised import SupervisedMethod
from mlsup_jax.losses import anomaly
from mlsup_jax.nn import build_model
from mlsup_jax.ood import detection_protocol

NETWORKS = ("autoencoder", "vae")
# The objective's outputs, per network.
LOSS_ROLES = {
  "autoencoder": {"": losses.LossRole(outputs=("reconstruction",))},
  "vae": {"": losses.LossRole(outputs=("reconstruction", "mu", "logvar"))},
}


class ReconstructionDetector(SupervisedMethod):
  """An AE or VAE trained on ID images; the reconstruction error is the anomaly score."""

  # The VAE's reparameterisation draws from the "sample" stream (there is no dropout).
  init_rng_names = ("params", "sample")
  step_rng_name = "sample"

  def __init__(self, config: ml_collections.ConfigDict):
    m = config.model
    if m.name not in NETWORKS:
      raise ValueError(f"model.name must be one of {NETWORKS} for this method, got {m.name!r}.")
    self.configure(config, LOSS_ROLES[m.name], build_model(m), ("image",), ("image", "ood"))

  def objective(self, outputs: dict, batch: dict):
    """Reconstruction (+ KL) loss of `batch: image [B, H, W, C]` in [0, 1]."""
    return losses.weighted_sum(self.config.loss, outputs=outputs, batch=batch)

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    """Per-image components: `reconstruction_error` (and `vae_loss`), `ood` [B]."""
    del rng  # Evaluation is deterministic (z = μ).
    image = batch["image"]
    outputs, _ = apply_network(self.model, state.params, state.model_state, image, train=False)
    result = {
      "reconstruction_error": anomaly.reconstruction_error(outputs["reconstruction"], image),
      **detection_protocol.image_labels(batch),
    }
    if "mu" in outputs:
      hparams = losses.term_hparams(self.config.loss, "vae")
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
