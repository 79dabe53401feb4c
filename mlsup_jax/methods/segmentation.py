"""Supervised semantic segmentation with any registered network, on any labelled data.

Network: `config.model.name`, any of `nn.SEGMENTATION_MODELS` (a per-pixel network returning
logits `[B, *S, K]`; for the mask transformer, its MaskFormer semantic log-probabilities), built
by name. Training: the `config.loss` terms on the logits (CE + Dice by default), one optimizer.
This is the generic trainer for a user's NIfTI / DICOM / PNG / nnU-Net data, and, on the
abdominal phantom, MaxQuery's per-pixel baseline (the nnU-Net stand-in of Yuan et al.).

Evaluation (`batch: image, label`; optional `ood`, `lesion`, `case_ood` unlock the OOD report):

* per class and on average: Dice, IoU, HD95, HD and ASD over cases, mIoU
  (`metrics/segmentation.multiclass_report`), when the data carry no OOD annotation;
* with OOD annotations (the abdominal phantom's held-out tumour subtypes), the OOD-segmentation
  report of `ood/segmentation_report.py` instead: inlier Dice with OOD pixels excluded, and the
  pixel- and case-level AUROC / AUPR / FPR95 of the classic per-pixel scores —
  `msp` = 1 − max softmax (Hendrycks & Gimpel), `max_logit` = −max logit (Hendrycks et al.),
  `energy` = −logsumexp (Liu et al.), `mc_dropout` = predictive entropy of the mean softmax over
  `eval.mc_samples` dropout passes (Gal & Ghahramani; the network runs in training mode, so a
  BatchNorm network uses batch statistics there), and `sml` = standardised max logit (Jung et
  al. ICCV 2021): `−(max logit − μ_c) / σ_c` with the per-predicted-class statistics fitted on
  `data.calibration_source` (training images; the evaluation loop passes their outputs as
  `outputs["calibration"]`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mlsup_jax import losses
from mlsup_jax.core.networks import apply_network
from mlsup_jax.core.state import TrainState
from mlsup_jax.core.supervised import SupervisedMethod
from mlsup_jax.losses.mask_transformer import layer_outputs
from mlsup_jax.nn import build_model
from mlsup_jax.ood import scores, segmentation_report
from mlsup_jax.ood.sml import SmlStatistics

LOSS_ROLES = {"": losses.LossRole(outputs=("logits",))}


def predicted_classes(logits: jax.Array) -> jax.Array:
  """`logits: [B, *S, K]` → class indices `[B, *S]` int32 (K = 1: `logit > 0`)."""
  if logits.shape[-1] == 1:
    return (logits[..., 0] > 0).astype(jnp.int32)
  return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def two_class_logits(logits: jax.Array) -> jax.Array:
  """A one-channel sigmoid output as the logits `[0, l]` of two classes; K > 1 unchanged."""
  if logits.shape[-1] == 1:
    return jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
  return logits


def semantic_logits(outputs) -> jax.Array:
  """Per-pixel logits of a network's output: the array itself, or a mask transformer's semantic
  log-probabilities (`losses/mask_transformer.layer_outputs`)."""
  if isinstance(outputs, dict):
    return layer_outputs(outputs)["logits"]
  return outputs


def evaluation_class_names(config) -> tuple[str, ...]:
  """`config.data.class_names`, or `class0 …` for the model's classes (at least 2)."""
  if "class_names" in config.data:
    return tuple(config.data.class_names)
  return tuple(f"class{k}" for k in range(max(int(config.model.num_classes), 2)))


def passthrough(batch: dict) -> dict:
  """The ground truth an eval step hands to `evaluate`: `label`, the first image channel (for
  figures), and the OOD annotations when the data have them."""
  result = {"label": batch["label"], "image": batch["image"][..., 0]}
  result.update({k: batch[k] for k in segmentation_report.OOD_KEYS if k in batch})
  return result


class SegmentationMethod(SupervisedMethod):
  """One supervised stage of a segmentation network (module docstring)."""

  # The init key is the params key itself (dropout draws nothing at init).
  init_rng_names = ("params",)

  def __init__(self, config: ml_collections.ConfigDict):
    model = build_model(config.model, spatial_dims=config.data.spatial_dims)
    self.configure(config, LOSS_ROLES, model)

  def objective(self, outputs, batch: dict):
    """The `config.loss` terms on `logits: [B, *S, K]`; `batch: image, label [B, *S]`."""
    return losses.weighted_sum(
      self.config.loss, outputs={"logits": semantic_logits(outputs)}, batch=batch
    )

  def logits(self, state: TrainState, image: jax.Array, train: bool, rng=None) -> jax.Array:
    outputs, _ = apply_network(
      self.model,
      state.params,
      state.model_state,
      image,
      train=train,
      rngs=None if rng is None else {"dropout": rng},
    )
    return semantic_logits(outputs)

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    logits = self.logits(state, batch["image"], train=False)
    result = passthrough(batch)
    result["pred"] = predicted_classes(logits)
    scored = two_class_logits(logits)
    for name in ("msp", "max_logit", "energy"):
      result[f"score/{name}"] = scores.PIXEL_SCORES[name](scored)
    samples = self.config.eval.mc_samples
    if samples > 0 and "dropout_rate" in self.config.model and self.config.model.dropout_rate > 0:

      def stochastic_probs(key):
        sample = two_class_logits(self.logits(state, batch["image"], train=True, rng=key))
        return jax.nn.softmax(sample, axis=-1)

      probs = jax.lax.map(stochastic_probs, jax.random.split(rng, samples))
      result["score/mc_dropout"] = scores.predictive_entropy(probs)
    return result

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    cfg = self.config.eval
    outputs = dict(outputs)
    calibration = outputs.pop("calibration", None)
    class_names = evaluation_class_names(self.config)
    if not segmentation_report.has_ood_annotations(outputs):
      return segmentation_report.plain_report(
        outputs,
        class_names,
        workdir if cfg.save_figures else None,
        self.config.model.name,
        missed_distance=cfg.missed_distance,
      )
    if calibration is not None:
      outputs["score/sml"] = self.standardized_max_logit(outputs, calibration)
    results = segmentation_report.report(outputs, cfg, class_names, workdir)
    if workdir is not None and cfg.save_figures and jax.process_index() == 0:
      segmentation_report.save_case_figure(
        f"{workdir}/{self.config.model.name}_cases.png",
        outputs,
        cfg,
        class_names,
        "score/max_logit",
      )
    return results

  def standardized_max_logit(self, outputs: dict, calibration: dict) -> np.ndarray:
    """SML scores of the evaluation pixels from statistics of the calibration (training) pixels."""
    stats = SmlStatistics(max(int(self.config.model.num_classes), 2))
    # `score/max_logit` is −max logit (higher = more OOD).
    stats.update(-calibration["score/max_logit"], calibration["pred"])
    mean, std = stats.finalize()
    pred = outputs["pred"]
    return -((-outputs["score/max_logit"]) - mean[pred]) / std[pred]
