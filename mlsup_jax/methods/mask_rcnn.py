"""Mask R-CNN instance segmentation trained on (weak) instance label maps (thesis §3.2).

Network: `nn/mask_rcnn.MaskRCNN` (ResNet-41 / 50 / 65 + FPN, RPN, RoIAlign, box and mask heads,
fixed counts), built from `config.model`. Training: one stage, `config.loss` = the five terms of
`losses/detection.py` (weight 1 each: Eq. 3.5 plus the RPN's), one optimizer; the instance map
`label [B, H, W]` goes into the model, which samples its anchors and RoIs (RNG stream
`sampling`), so the whole step is one jitted, sharded function.

Evaluation (`batch: image, label`; optional `cluster`, the phantom's clustered-droplet map):
the pasted detections `pred [B, H, W]` against `label` per image — one-to-one F1 / precision /
recall at IoU 0.5, mean matched IoU, AJI, PQ, Hausdorff (`metrics/instances.py`), the same over
clustered droplets when `cluster` is given, and the thesis's own AP / precision / recall / F1 /
Jaccard (`thesis/…`); means over images. An overlay figure of the first images is written.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from mlsup_jax import losses
from mlsup_jax.core.networks import apply_network
from mlsup_jax.core.state import TrainState
from mlsup_jax.core.supervised import SupervisedMethod
from mlsup_jax.nn import build_model
from mlsup_jax.pipelines import nuclei_study

OUTPUTS = (
  "rpn_logits",
  "rpn_labels",
  "rpn_weights",
  "rpn_deltas",
  "rpn_target_deltas",
  "rpn_positive",
  "roi_class_logits",
  "roi_labels",
  "roi_valid",
  "roi_deltas",
  "roi_target_deltas",
  "roi_positive",
  "mask_logits",
  "mask_targets",
  "mask_positive",
)
LOSS_ROLES = {"": losses.LossRole(outputs=OUTPUTS)}

__all__ = ["LOSS_ROLES", "MaskRcnnMethod", "predict_instances"]


def predict_instances(model, params, image) -> np.ndarray:
  """Instance maps `[B, H, W]` int32 of `image [B, H, W, 3]` (normalised as in training).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from mlsup_jax.methods.mask_rcnn import predict_instances
    >>> from mlsup_jax.nn.mask_rcnn import MaskRCNN
    >>> model = MaskRCNN(depth=41, width=4, fpn_channels=8, norm_groups=4, head_hidden=16,
    ...                  pre_nms_test=32, post_nms_test=16, detections=4)
    >>> x = jnp.zeros((1, 64, 64, 3))
    >>> params = model.init(jax.random.key(0), x, train=False)["params"]
    >>> predict_instances(model, params, x).shape
    (1, 64, 64)
  """
  outputs = model.apply({"params": params}, image, train=False)
  return np.asarray(outputs["instances"])


class MaskRcnnMethod(SupervisedMethod):
  """One supervised stage of Mask R-CNN on instance label maps (module docstring)."""

  init_rng_names = ("params",)
  step_rng_name = "sampling"

  def __init__(self, config: ml_collections.ConfigDict):
    self.configure(config, LOSS_ROLES, build_model(config.model))

  def network_inputs(self, batch: dict) -> dict:
    return {"instances": batch["label"]}

  def objective(self, outputs, batch: dict):
    return losses.weighted_sum(self.config.loss, outputs=outputs, batch=batch)

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    del rng
    outputs, _ = apply_network(
      self.model, state.params, state.model_state, batch["image"], train=False
    )
    result = {
      "pred": outputs["instances"],
      "label": batch["label"],
      "num_detections": outputs["valid"].sum(-1),
    }
    if "cluster" in batch:
      result["cluster"] = batch["cluster"]
    if self.config.eval.save_figures:
      result["image"] = batch["image"]
    return result

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    per_image = []
    for index in range(len(outputs["pred"])):
      case = {"label": outputs["label"][index]}
      # Without a cluster map every object counts as "clustered": the clumped metrics then
      # repeat the whole-image ones rather than being empty.
      case["cluster"] = outputs["cluster"][index] if "cluster" in outputs else case["label"]
      per_image.append(nuclei_study.evaluate_field(case, outputs["pred"][index], "cluster"))
    results = {}
    for key in per_image[0]:
      values = [f[key] for f in per_image if np.isfinite(f[key])]
      results[key] = float(np.mean(values)) if values else float("nan")
    results["detections_per_image"] = float(np.mean(outputs["num_detections"]))
    if workdir is not None and "image" in outputs and jax.process_index() == 0:
      self.save_figure(outputs, os.path.join(workdir, "mask_rcnn_examples.png"))
    return results

  def save_figure(self, outputs: dict, path: str) -> str:
    """The first image's predicted and reference instances outlined over it."""
    from mlsup_jax.viz.instances import save_instance_figure

    image = np.asarray(outputs["image"][0], np.float32)
    image = (image - image.min()) / max(float(np.ptp(image)), 1e-6)
    return save_instance_figure(
      path, image, {"Mask R-CNN": outputs["pred"][0], "reference": outputs["label"][0]}
    )
