"""Image classification with a small CNN (MedShift's classifier G, thesis §5.2.5 at phantom scale).

One stage: `nn/classifier.py`'s CNN learns `class_id` from `image` with the loss terms of
`config.loss` (softmax cross-entropy by default; the batch's `class_id` is handed to the loss as
its `label`). Evaluation reports (over the valid examples of `config.data.eval_source`):

* `accuracy`, `balanced_accuracy` (mean per-class recall over the classes present),
* `macro_precision`, `macro_recall`, `macro_f1` (one-vs-rest on the argmax, averaged over the
  classes present in the labels; a class never predicted has precision 0, as sklearn's
  `zero_division=0`),
* `recall/<class name>` per present class, and `num_examples`.
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
from mlsup_jax.nn import build_model


def classification_report(
  labels: np.ndarray, predictions: np.ndarray, class_names=None
) -> dict[str, float]:
  """Accuracy and one-vs-rest macro metrics (module docstring).

  Args:
    labels: `[N]` int true classes.
    predictions: `[N]` int predicted classes.
    class_names: names for the per-class keys (default: the class index).
  """
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  if labels.shape != predictions.shape or labels.ndim != 1 or not len(labels):
    raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must be [N > 0].")
  results = {"accuracy": float(np.mean(labels == predictions)), "num_examples": float(len(labels))}
  precisions, recalls, f1s = [], [], []
  for c in np.unique(labels):
    tp = np.sum((predictions == c) & (labels == c))
    predicted = np.sum(predictions == c)
    precision = tp / predicted if predicted else 0.0
    recall = tp / np.sum(labels == c)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    precisions.append(precision)
    recalls.append(recall)
    f1s.append(f1)
    name = class_names[int(c)] if class_names is not None else str(int(c))
    results[f"recall/{name}"] = float(recall)
  results["balanced_accuracy"] = float(np.mean(recalls))
  results["macro_precision"] = float(np.mean(precisions))
  results["macro_recall"] = float(np.mean(recalls))
  results["macro_f1"] = float(np.mean(f1s))
  return results


# The terms read `label`: the method hands them the batch's `class_id` under that name.
LOSS_ROLES = {"": losses.LossRole(outputs=("logits", "features"), stream=None)}


class ImageClassifierMethod(SupervisedMethod):
  """A CNN trained with cross-entropy on `class_id` (module docstring)."""

  # The init key is the params key itself (no dropout at init).
  init_rng_names = ("params",)

  def __init__(self, config: ml_collections.ConfigDict):
    # `label` is made from `class_id` before the loss terms see the batch.
    keys = ("image", "class_id")
    self.configure(config, LOSS_ROLES, build_model(config.model), keys, keys)

  def objective(self, outputs: dict, batch: dict):
    """Cross-entropy on `batch: image [B, H, W, C], class_id [B]`, with the batch accuracy."""
    labelled = {**batch, "label": batch["class_id"]}
    loss, metrics = losses.weighted_sum(self.config.loss, outputs=outputs, batch=labelled)
    accuracy = jnp.mean(jnp.argmax(outputs["logits"], -1) == batch["class_id"])
    return loss, losses.merge_metrics(metrics, {"accuracy": accuracy}, "The classifier")

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    """Per-image `probabilities: [B, K]`, `features: [B, F]`, `class_id: [B]`."""
    del rng
    outputs, _ = apply_network(
      self.model, state.params, state.model_state, batch["image"], train=False
    )
    return {
      "probabilities": jax.nn.softmax(outputs["logits"], axis=-1),
      "features": outputs["features"],
      "class_id": batch["class_id"],
    }

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    del workdir
    predictions = np.argmax(outputs["probabilities"], axis=-1)
    names = self.config.data.class_names if "class_names" in self.config.data else None
    return classification_report(outputs["class_id"], predictions, names)
