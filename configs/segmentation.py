r"""Supervised segmentation with any registered network, on the abdominal CT phantom or your data.

Train and evaluate (U-Net, the five phantom classes):
  python -m launch.train --config=configs/segmentation.py --workdir=runs/seg
Smoke run (seconds on a CPU):
  python -m launch.train --config=configs/segmentation.py:smoke --workdir=runs/seg_smoke
Another network (a config line; the fields the new network does not take are dropped):
  ... --config.model.name=scunet
Your own data, e.g. an nnU-Net raw dataset with 3 labels (background first):
  python -m launch.train --config=configs/segmentation.py --workdir=runs/mine \
      --config.data.train_source.name=nnunet_raw --config.data.train_source.root=DIR \
      --config.data.eval_source.name=nnunet_raw --config.data.eval_source.root=DIR2 \
      --config.data.num_classes=3 --config.model.num_classes=3 \
      --config.data.class_names='("background", "organ", "tumour")'
(`nifti_folder`, `image_folder`, `dicom_folder`, `tfds` likewise; see mlsup_jax/data/sources/.)
The phantom's CT window maps HU to [0, 1]; for other modalities set
`--config.data.train_transforms='("normalize",)'` with `data.norm_mean` / `data.norm_std`.

Options after the colon: `smoke` (tiny, for tests), `full` (128² slices, wider U-Net; for
accelerators), `3d` (small 3-D volumes).
"""

import ml_collections

from configs.sections import common
from configs.sections.abdomen_data import abdomen_data
from mlsup_jax import losses
from mlsup_jax.data.phantoms.abdomen import AbdomenPhantomSource
from mlsup_jax.methods.segmentation import LOSS_ROLES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, _ = common.parse_arg(arg, flags={"smoke", "full", "3d"}, values={})
  smoke, full, volumetric = "smoke" in flags, "full" in flags, "3d" in flags
  if smoke and full:
    raise ValueError("Options 'smoke' and 'full' exclude each other.")
  spatial_dims = 3 if volumetric else 2
  if smoke:
    image_size, depth, num_train, num_test, batch, steps, features = 32, 8, 16, 8, 8, 6, (8, 16)
  elif full:
    image_size, depth, num_train, num_test = 128, 32, 2000, 400
    batch, steps, features = 32, 20000, (32, 64, 128, 256, 320)
  else:
    image_size, depth, num_train, num_test = 64, 16, 400, 120
    batch, steps, features = 8, 500, (16, 32, 64, 128)
  if volumetric and not full:
    image_size, num_train, batch = min(image_size, 32), num_train // 2, 8

  config = ml_collections.ConfigDict()
  config.method = "segmentation"
  config.seed = 0
  num_classes = AbdomenPhantomSource.NUM_CLASSES
  config.model = ml_collections.ConfigDict(
    {
      "name": "unet",
      "num_classes": num_classes,
      "features": features,
      "dropout_rate": 0.0,
      "dtype": "float32",
    }
  )
  config.loss = losses.roles_section(LOSS_ROLES, {"": {"cross_entropy": 1.0, "soft_dice": 1.0}})
  config.optimizer = common.optimizer("adamw", learning_rate=1e-3, weight_decay=1e-4)
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_steps = 0 if smoke else min(50, steps // 10)

  # Every tumour subtype is an inlier class here (no held-out OOD subtypes).
  config.data = abdomen_data(
    image_size=image_size,
    spatial_dims=spatial_dims,
    depth=depth,
    num_train=num_train,
    num_test=num_test,
    batch_size=batch,
    ood_fraction=0.0,
  )
  # For data that is not CT: `--config.data.train_transforms='("normalize",)'` etc.
  config.data.norm_mean = 0.0
  config.data.norm_std = 1.0
  config.train = common.train(
    num_steps=steps, log_every=2 if smoke else 25, checkpoint_every=3 if smoke else 250
  )
  config.eval = ml_collections.ConfigDict(
    {
      "batch_size": 8 if smoke else 16,
      "mc_samples": 0,  # MC Dropout passes (needs model.dropout_rate > 0).
      # A missed structure's surface distance: "exclude" (counted in `num_missed`, not
      # averaged), "diagonal" (the image diagonal) or a number (metrics/segmentation.py).
      "missed_distance": "exclude",
      "save_figures": True,
      "num_figure_cases": 4,
      # Used only on data with OOD annotations (ood/segmentation_report.py).
      "ood_region": "lesion",
      "region_dilation": 2,
      "case_reduce": "mean",
    }
  )
  config.mesh = common.mesh()
  return common.finalize(config)
