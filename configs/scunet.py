r"""SCU-Net on the mammogram-like BAC phantom.

Train and evaluate:
  python -m launch.train --config=configs/scunet.py --workdir=runs/scunet
Smoke run (seconds on a CPU):
  python -m launch.train --config=configs/scunet.py:smoke --workdir=runs/scunet_smoke
The authors' code settings instead of the thesis's:
  ... --config.optimizer.learning_rate=1e-4 --config.eval.prob_threshold=0.65
Binary masks of your own (whole images; training crops `data.crop_size` patches from them):
  ... --config.data.train_source.name=image_folder --config.data.train_source.root=DIR \
      --config.data.eval_source.name=image_folder --config.data.eval_source.root=DIR2

Options after the colon: `smoke` (tiny model run for tests), `full` (thesis-size 512² patches
on 1024² images; for accelerators).
"""

import ml_collections

from configs.sections import common
from mlsup_jax import losses
from mlsup_jax.methods.scunet import LOSS_ROLES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, _ = common.parse_arg(arg, flags={"smoke", "full"}, values={})
  smoke, full = "smoke" in flags, "full" in flags
  image_size, patch, stride = (
    (64, 32, 16) if smoke else ((1024, 512, 448) if full else (256, 64, 48))
  )
  num_train = 8 if smoke else (64 if full else 48)
  num_eval = 4 if smoke else (16 if full else 12)

  config = ml_collections.ConfigDict()
  config.method = "scunet"
  config.seed = 0

  config.model = ml_collections.ConfigDict(
    {"name": "scunet", "num_classes": 1, "dropout_rate": 0.5, "dtype": "float32"}
  )
  # Thesis: soft Dice alone (the library's batch Dice, smooth 1).
  config.loss = losses.roles_section(LOSS_ROLES, {"": {"soft_dice": 1.0}})
  # Thesis: AdamW, lr 1e-3. Weight decay 0.01 is the authors' code (the thesis is silent).
  config.optimizer = common.optimizer("adamw", learning_rate=1e-3, weight_decay=0.01)

  phantom = {
    "name": "phantom_bac",
    "num_images": num_train,
    "image_size": image_size,
    "patch_size": patch,
    "patch_stride": stride,
    "seed": 0,
  }
  config.data = ml_collections.ConfigDict(
    {
      # Training: BAC-positive patches only (thesis); evaluation: whole images, stitched.
      "train_source": {**phantom, "split": "train", "positive_only": True, "whole_images": False},
      "eval_source": {
        **phantom,
        "split": "val",
        "num_images": num_eval,
        "positive_only": False,
        "whole_images": True,
      },
      "batch_size": 8 if smoke else 32,
      "seed": 0,
      "spatial_dims": 2,
      "num_classes": 2,  # Label values {0, 1}; the model has one sigmoid output.
      "require_label": True,
      # `random_crop` cuts `crop_size` patches from whole images (real data); the phantom's
      # training examples are already patches of that size, which it leaves unchanged.
      "train_transforms": (
        "random_crop",
        "random_dihedral",
        "random_brightness",
        "normalize",
        "replicate_channels",
      ),
      "eval_transforms": ("normalize", "replicate_channels"),
      # The authors' training normalisation of [0, 1] images.
      "norm_mean": 0.2843,
      "norm_std": 0.1712,
      "brightness_delta": 0.2,
      "in_channels": 3,
      "crop_size": patch,
      "worker_count": 0,
      "read_threads": 2,
    }
  )
  config.train = common.train(
    num_steps=24 if smoke else (3000 if full else 600),
    log_every=4 if smoke else 50,
    checkpoint_every=8 if smoke else 200,
  )
  config.eval = ml_collections.ConfigDict(
    {
      "batch_size": 4 if smoke else 8,
      "patch_size": patch,
      "patch_stride": stride,
      "merge": "max",
      "prob_threshold": 0.5,
      "intensity_threshold": 100.0,
      "inclusive_intensity": False,
      "save_figures": True,
      "num_figure_images": 3,
    }
  )
  config.mesh = common.mesh()
  return common.finalize(config)
