r"""Mask R-CNN on weak droplet labels of the H&E steatosis phantom (thesis §3.2).

Train on the weak labels (the §3.1 algorithm adapted), evaluate against the exact droplets:
  python -m launch.train --config=configs/mask_rcnn.py:small --workdir=runs/mask_rcnn
The thesis's backbones: `depth=41`, `depth=50` (its best) or `depth=65`, e.g.
  ... --config=configs/mask_rcnn.py:full,depth=65
Your own tiles (RGB images; weak labels made from them, the evaluation with your masks):
  ... --config.data.train_source.base.name=image_folder --config.data.train_source.base.root=DIR

Sizes after the colon: `smoke` (seconds; tests), `tiny` (128² tiles, a ResNet at 1/8 width,
200 steps: the CPU learns test), `small` (the same for 1,000 steps: the CPU study), default
(256² tiles at 1/4 width), `full` (the thesis code's: 512² crops, ResNet at full width, FPN 256,
128 RoIs and 64 RPN anchors per image, up to 200 objects and 400 detections, 6 images per
device; for accelerators).

Deviations from the thesis, each a config line: trained from scratch (COCO weights cannot be
downloaded here: `nn/mask_rcnn.py` names the extension point) with GroupNorm, so AdamW at 1e-3
instead of SGD at 0.02 with the heads-first schedule of a fine-tuned model
(`--config.optimizer.name=sgd --config.optimizer.learning_rate=0.02` gives the thesis's).
"""

import ml_collections

from configs.sections import common
from mlsup_jax import losses
from mlsup_jax.methods.mask_rcnn import LOSS_ROLES

SIZES = {
  # tile, droplet radius, droplets / tile, width, FPN, FC, pre / post NMS (train), RPN anchors,
  # RoIs, objects, detections, batch, steps, training tiles, evaluation tiles
  "smoke": (64, 5.0, 6, 4, 8, 32, 128, 64, 64, 32, 16, 16, 2, 4, 4, 2),
  "tiny": (128, 8.0, 10, 8, 32, 128, 512, 256, 128, 64, 32, 48, 4, 200, 24, 6),
  "small": (128, 8.0, 10, 8, 32, 128, 512, 256, 128, 64, 32, 48, 4, 1000, 24, 6),
  "default": (256, 10.0, 30, 16, 64, 256, 1000, 500, 128, 96, 96, 128, 4, 1500, 48, 12),
  "full": (512, 14.0, 100, 64, 256, 1024, 6000, 1000, 64, 128, 200, 400, 6, 20000, 387, 45),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(arg, flags=set(SIZES) - {"default"}, values={"depth": "41"})
  size = next(iter(flags), "default")
  if len(flags) > 1:
    raise ValueError(f"choose one size, got {sorted(flags)}.")
  (tile, radius, droplets, width, fpn, hidden, pre, post, anchors, rois, objects, detections,
   batch, steps, num_train, num_eval) = SIZES[size]  # fmt: skip
  depth = int(values["depth"])

  config = ml_collections.ConfigDict()
  config.method = "mask_rcnn"
  config.seed = 0
  config.model = ml_collections.ConfigDict(
    {
      "name": "mask_rcnn",
      "depth": depth,
      "width": width,
      "fpn_channels": fpn,
      "norm_groups": min(32, width),
      "head_hidden": hidden,
      # The thesis code's anchors (one size per level P2 … P6) and NMS thresholds.
      "anchor_sizes": (8, 16, 32, 64, 128),
      "anchor_ratios": (0.5, 1.0, 2.0),
      "pre_nms_train": pre,
      "post_nms_train": post,
      "pre_nms_test": pre,
      "post_nms_test": post,
      "rpn_nms_train": 0.9,
      "rpn_nms_test": 0.7,
      "rpn_anchors_per_image": anchors,
      "rois_per_image": rois,
      "roi_positive_fraction": 0.33,
      "max_instances": objects,
      "detections": detections,
      "detection_nms": 0.3,
      "detection_min_score": 0.5,
      "mask_threshold": 0.5,
      # Overlaps: the panoptic merge (a duplicate less than half visible is dropped).
      "min_visible": 0.5,
      # A quarter of r² is a droplet of radius 0.28 r, below the phantom's smallest (0.4 r).
      "min_object_area": int(0.25 * radius**2),
      "dtype": "float32",
    }
  )
  config.loss = losses.roles_section(
    LOSS_ROLES,
    {
      "": {"rpn_objectness": 1.0, "rpn_box": 1.0, "roi_class": 1.0, "roi_box": 1.0, "roi_mask": 1.0}
    },
  )
  config.optimizer = common.optimizer("adamw", learning_rate=1e-3, weight_decay=1e-4)
  config.optimizer.grad_clip_norm = 5.0  # Early RPN boxes can be wild; clipping keeps Adam sane.

  phantom = {
    "name": "phantom_steatosis",
    "image_size": tile,
    "droplet_radius": radius,
    "num_droplets": droplets,
  }
  config.data = ml_collections.ConfigDict(
    {
      "train_source": {
        "name": "weak_droplet_labels",
        "droplet_radius": radius,
        "base": {**phantom, "split": "train", "num_cases": num_train, "seed": 0},
      },
      # Scored against the exact droplets; `cluster` unlocks the clustered-droplet metrics.
      "eval_source": {**phantom, "split": "test", "num_cases": num_eval, "seed": 0},
      "batch_size": batch,
      "seed": 0,
      "spatial_dims": 2,
      # Instance ids are not classes: the label check accepts up to `max_instances` ids.
      "num_classes": objects + 1,
      "require_label": True,
      # The thesis's augmentation: flips / right-angle rotations and intensity scaling.
      "train_transforms": ("random_dihedral", "random_brightness", "normalize"),
      "eval_transforms": ("normalize",),
      "norm_mean": 0.75,
      "norm_std": 0.2,
      "brightness_delta": 0.2,
      "in_channels": 3,
      "worker_count": 0,
      "read_threads": 2,
    }
  )
  config.train = common.train(
    num_steps=steps,
    log_every=max(1, min(50, steps // 8)),
    checkpoint_every=max(1, min(1000, steps // 2)),
  )
  config.eval = ml_collections.ConfigDict(
    {"batch_size": 2 * batch if size != "full" else batch, "save_figures": True}
  )
  config.mesh = common.mesh()
  return common.finalize(config)
