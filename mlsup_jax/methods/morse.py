"""MORSE (seed 003 §5f): fully supervised segmentation with the MORSE rendering head.

MORSE is a head added to any segmentation backbone (`nn/morse.py`; `config.model.name = "morse"`,
`config.model.backbone` any of `nn.SEGMENTATION_MODELS`), trained fully supervised (the
authors' snapshot trains on every labelled slice; it is not a semi-supervised method).

Objective at step t of T (the authors' `train.py`):

  loss = Σ config.loss terms on the coarse logits (0.5·CE + 0.5·Dice)
         + w(t) · CE(point logits, labels at the points),
  w(t) = 0 for t < s·T, then min((t − s·T) / T, w_max)   (s = `point_loss.start_fraction` 0.5,
                                                          w_max = `point_loss.max_weight` 0.5),

the labels read at the training points by nearest-neighbour sampling (`point_sample(...,
"nearest")`, as theirs). Evaluation reports the refined prediction with the usual segmentation
report, plus the coarse prediction's mean Dice and both predictions' accuracy on **boundary
pixels** (pixels whose label differs from one of their 2·d face neighbours), the pixels the
refinement is for.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mlsup_jax import losses
from mlsup_jax.core.networks import apply_network
from mlsup_jax.core.state import TrainState
from mlsup_jax.methods.segmentation import (
  SegmentationMethod,
  evaluation_class_names,
  predicted_classes,
)
from mlsup_jax.metrics import segmentation as seg_metrics
from mlsup_jax.nn import build_model
from mlsup_jax.nn.point_rendering import point_sample, uncertainty

LOSS_ROLES = {"": losses.LossRole(outputs=("logits",))}


def point_loss_weight(step, num_steps: int, start_fraction: float, max_weight: float):
  """`w(t)` of the module docstring (works on ints and traced scalars)."""
  start = start_fraction * num_steps
  return jnp.clip((jnp.asarray(step, jnp.float32) - start) / num_steps, 0.0, max_weight)


def point_cross_entropy(point_logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean CE of `point_logits: [B, N, K]` against `labels: [B, N]` (K = 1: sigmoid BCE)."""
  if point_logits.shape[-1] == 1:
    return optax.sigmoid_binary_cross_entropy(
      point_logits[..., 0], labels.astype(jnp.float32)
    ).mean()
  return optax.softmax_cross_entropy_with_integer_labels(point_logits, labels).mean()


class MorseMethod(SegmentationMethod):
  """Backbone + MORSE head, fully supervised (module docstring)."""

  init_rng_names = ("params", "dropout")

  def __init__(self, config: ml_collections.ConfigDict):
    if config.model.name != "morse":
      raise ValueError(
        f"config.model.name must be 'morse' for this method, got {config.model.name!r}."
      )
    model = build_model(config.model, spatial_dims=config.data.spatial_dims)
    self.configure(config, LOSS_ROLES, model)

  def logits(self, state: TrainState, image: jax.Array, train: bool, rng=None) -> jax.Array:
    outputs, _ = apply_network(self.model, state.params, state.model_state, image, train=False)
    return outputs["logits"]

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    cfg = self.config.point_loss
    weight = point_loss_weight(
      state.step, self.config.train.num_steps, cfg.start_fraction, cfg.max_weight
    )

    def loss_fn(params):
      outputs, model_state = apply_network(
        self.model, params, state.model_state, batch["image"], train=True, rngs={"dropout": rng}
      )
      coarse_loss, metrics = losses.weighted_sum(
        self.config.loss, outputs={"logits": outputs["logits"]}, batch=batch
      )
      label = batch["label"][..., None].astype(jnp.float32)
      point_labels = point_sample(label, outputs["point_coords"], mode="nearest")[..., 0]
      point_loss = point_cross_entropy(outputs["point_logits"], point_labels.astype(jnp.int32))
      loss = coarse_loss + weight * point_loss
      metrics = {**metrics, "point_loss": point_loss, "point_weight": weight}
      return loss, (model_state, metrics)

    (loss, (model_state, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, optimizer=self.optimizer, model_state=model_state)
    return state, {"loss": loss, **metrics}

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    outputs, _ = apply_network(
      self.model, state.params, state.model_state, batch["image"], train=False
    )
    return {
      "label": batch["label"],
      "image": batch["image"][..., 0],
      "pred": predicted_classes(outputs["logits"]),
      "coarse_pred": predicted_classes(outputs["coarse_logits"]),
      # The coarse logits' top-2 gap, negated: where the refinement looks (the figure's map).
      "score/coarse_uncertainty": uncertainty(outputs["coarse_logits"]),
    }

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    outputs = dict(outputs)
    coarse = outputs.pop("coarse_pred")
    results = super().evaluate(outputs, workdir)
    class_names = evaluation_class_names(self.config)
    coarse_report = seg_metrics.multiclass_report(
      coarse, outputs["label"], class_names, missed_distance=self.config.eval.missed_distance
    )
    for key in ("dice", "iou", "hd95", "asd"):
      if key in coarse_report:
        results[f"coarse/{key}"] = coarse_report[key]
    accuracy = seg_metrics.boundary_accuracy(coarse, outputs["label"])
    if accuracy is not None:
      results["coarse/boundary_accuracy"] = accuracy
    return results
