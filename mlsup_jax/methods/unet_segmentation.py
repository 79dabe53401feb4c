"""Per-pixel U-Net segmentation with classic OOD scores (MaxQuery's nnU-Net stand-in baseline).

Network: `nn/unet.py` (nnU-Net-style; dropout in the decoder for MC Dropout). Training: the
`config.loss` terms (CE + Dice) on the logits. Evaluation: inlier Dice and the per-pixel OOD
scores of Yuan et al.'s comparison, all from this one network:

* `msp` = 1 − max softmax (Hendrycks & Gimpel), `max_logit` = −max logit (Hendrycks et al.),
  `energy` = −logsumexp (Liu et al.),
* `mc_dropout` = predictive entropy of the mean softmax over `eval.mc_samples` dropout passes
  (Gal & Ghahramani),
* `sml` = standardised max logit (Jung et al. ICCV 2021): `−(max logit − μ_c) / σ_c` with the
  per-predicted-class statistics fitted on `data.calibration_source` (training images; the
  evaluation loop passes their outputs as `outputs["calibration"]`).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mlsup_jax import losses
from mlsup_jax.core.method import Stage
from mlsup_jax.core.optimizers import build_optimizer
from mlsup_jax.core.registry import MODELS
from mlsup_jax.core.state import TrainState
from mlsup_jax.methods.maxquery import case_outputs
from mlsup_jax.ood import scores, segmentation_report
from mlsup_jax.ood.sml import SmlStatistics


class UNetSegmentationMethod:
  """One supervised stage of a per-pixel classifier; OOD scores from its logits."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    m = config.model
    self.model = MODELS.get(m.name)(
      num_classes=m.num_classes,
      features=tuple(m.backbone_features),
      spatial_dims=config.data.spatial_dims,
      dropout_rate=m.dropout_rate,
      dtype=jnp.dtype(m.dtype),
    )
    self.optimizer = build_optimizer(config.optimizer, config.train.num_steps)
    self.stages = (Stage("train", config.train.num_steps, self.train_step, self.optimizer),)

  def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
    params = self.model.init(rng, example_batch["image"])["params"]
    return TrainState.create(params=params, optimizer=self.optimizer)

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """`batch: image [B, *S, C], label [B, *S]` → updated state and scalar metrics."""

    def loss_fn(params):
      logits = self.model.apply(
        {"params": params}, batch["image"], deterministic=False, rngs={"dropout": rng}
      )
      return losses.weighted_sum(self.config.loss, outputs={"logits": logits}, batch=batch)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, optimizer=self.optimizer)
    return state, {"loss": loss, **metrics}

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    variables = {"params": state.params}
    logits = self.model.apply(variables, batch["image"])
    result = case_outputs(batch)
    result["pred"] = jnp.argmax(logits, axis=-1)
    for name in ("msp", "max_logit", "energy"):
      result[f"score/{name}"] = scores.PIXEL_SCORES[name](logits)
    samples = self.config.eval.mc_samples
    if samples > 0 and self.config.model.dropout_rate > 0:

      def stochastic_probs(key):
        sample = self.model.apply(
          variables, batch["image"], deterministic=False, rngs={"dropout": key}
        )
        return jax.nn.softmax(sample, axis=-1)

      probs = jax.lax.map(stochastic_probs, jax.random.split(rng, samples))
      result["score/mc_dropout"] = scores.predictive_entropy(probs)
    return result

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    cfg = self.config.eval
    outputs = dict(outputs)
    calibration = outputs.pop("calibration", None)
    if calibration is not None:
      outputs["score/sml"] = self.standardized_max_logit(outputs, calibration)
    class_names = tuple(self.config.data.class_names)
    results = segmentation_report.report(outputs, cfg, class_names, workdir)
    if workdir is not None and cfg.save_figures and jax.process_index() == 0:
      segmentation_report.save_case_figure(
        os.path.join(workdir, "unet_cases.png"), outputs, cfg, class_names, "score/max_logit"
      )
    return results

  def standardized_max_logit(self, outputs: dict, calibration: dict) -> np.ndarray:
    """SML scores of the evaluation pixels from statistics of the calibration (training) pixels."""
    stats = SmlStatistics(self.config.model.num_classes)
    # `score/max_logit` is −max logit (higher = more OOD).
    stats.update(-calibration["score/max_logit"], calibration["pred"])
    mean, std = stats.finalize()
    pred = outputs["pred"]
    return -((-outputs["score/max_logit"]) - mean[pred]) / std[pred]
