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

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax._src import config as jax_config

from mlsup_jax import losses
from mlsup_jax.core.checkpoint import Checkpointer
from mlsup_jax.core.networks import apply_network
from mlsup_jax.core.state import TrainState
from mlsup_jax.core.supervised import SupervisedMethod
from mlsup_jax.nn import build_model
from mlsup_jax.nn.mask_rcnn import MaskRCNN
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

__all__ = ["LOSS_ROLES", "MaskRcnnMethod", "TrainedMaskRcnn", "load_trained", "predict_instances"]


def predict_instances(model, params, image) -> np.ndarray:
  """Instance maps `[B, H, W]` int32 of `image [B, H, W, 3]` (normalised as in training).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from mlsup_jax.methods.mask_rcnn import predict_instances
    >>> from mlsup_jax.nn.mask_rcnn import MaskRCNN
    >>> model = MaskRCNN(depth=41, width=4, fpn_channels=8, norm_groups=4, head_hidden=16,
    ...                  pre_nms_test=32, post_nms_test=16, detections=4)
    >>> x = jnp.zeros((1, 64, 64, 3))
    >>> key = jax.random.key(0)
    >>> params = model.init(key, x, method=MaskRCNN.initialize)["params"]  # doctest: +SKIP
    >>> predict_instances(model, params, x).shape  # doctest: +SKIP
    (1, 64, 64)
  """
  outputs = model.apply({"params": params}, image, train=False)
  return np.asarray(outputs["instances"])


class TrainedMaskRcnn:
  """A trained Mask R-CNN as a tile predictor: `predictor(rgb [H, W, 3] in [0, 1])` → `[H, W]`
  int32 instances. The tile is normalised as in training (`data.norm_mean` / `norm_std`) and
  mirror-padded to `window` (a multiple of 32), so every tile runs the same compiled program."""

  def __init__(self, config: ml_collections.ConfigDict, params, window: int):
    self.config = config
    self.window = int(-(-int(window) // 32) * 32)
    self.model = build_model(config.model)
    self.params = params
    self._predict = jax.jit(
      lambda p, x: self.model.apply({"params": p}, x, train=False)["instances"]
    )

  def __call__(self, tile: np.ndarray) -> np.ndarray:
    height, width = tile.shape[:2]
    if height > self.window or width > self.window:
      raise ValueError(f"tile {height} × {width} is larger than the window {self.window}.")
    mean, std = float(self.config.data.norm_mean), float(self.config.data.norm_std)
    # Mirror padding: a constant (white) border looks like one huge droplet to the network.
    tile = np.asarray(tile[..., :3], np.float32)
    padded = np.pad(
      tile, ((0, self.window - height), (0, self.window - width), (0, 0)), mode="symmetric"
    )[None]
    instances = self._predict(self.params, jnp.asarray((padded - mean) / std))
    return np.asarray(instances[0, :height, :width])


def load_trained(workdir: str, window: int, step: int | None = None) -> TrainedMaskRcnn:
  """The Mask R-CNN of a `launch.train` run folder (`config.json` + checkpoints), newest step by
  default, as a tile predictor of `window`-sided tiles. The training data need not be present.

  Example:
    >>> from mlsup_jax.methods.mask_rcnn import load_trained
    >>> predictor = load_trained("runs/mask_rcnn", window=1216)  # doctest: +SKIP
    >>> instances = predictor(tile)  # doctest: +SKIP
  """
  with open(os.path.join(workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  method = config.method if "method" in config else None
  if method != "mask_rcnn":
    raise ValueError(f"{workdir} is a {method!r} run, not a Mask R-CNN one.")
  method = MaskRcnnMethod(config)
  example = {"image": jnp.zeros((1, 64, 64, 3), jnp.float32)}
  abstract = jax.eval_shape(method.init, jax.random.key(0), example)
  checkpointer = Checkpointer(workdir, config, write_config=False)
  try:
    step = checkpointer.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {checkpointer.directory}.")
    state, _ = checkpointer.restore(step, abstract)
  finally:
    checkpointer.close()
  return TrainedMaskRcnn(config, state.params, window)


class MaskRcnnMethod(SupervisedMethod):
  """One supervised stage of Mask R-CNN on instance label maps (module docstring)."""

  init_rng_names = ("params",)
  step_rng_name = "sampling"

  def __init__(self, config: ml_collections.ConfigDict):
    self.configure(config, LOSS_ROLES, build_model(config.model))

  def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
    """Parameters from `MaskRCNN.initialize` (no NMS or sampling traced), drawn with the
    non-partitionable threefry: the parameters are the same on any sharding either way, and
    XLA's CPU backend compiles the partitionable generator ~8× slower (measured: 38.8 vs 4.9 s
    for six `normal` draws) — for ~170 tensors that was most of a minute per run."""
    image = example_batch["image"][:1]
    with jax_config.threefry_partitionable(False):
      variables = self.model.init({"params": rng}, image, method=MaskRCNN.initialize)
    return TrainState.create(
      params=variables["params"], optimizer=self.optimizer, model_state={"batch_stats": {}}
    )

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
    results = nuclei_study.field_means(per_image)
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
