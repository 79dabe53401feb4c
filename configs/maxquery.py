r"""MaxQuery (mask transformer + QD loss) and its baselines on the abdominal CT phantom.

The whole study (U-Net baseline, MaxQuery w/o QD, MaxQuery; the paper's tables):
  python -m launch.maxquery --workdir=runs/maxquery
One variant alone:
  python -m launch.train --config=configs/maxquery.py --workdir=runs/mq
  python -m launch.train --config=configs/maxquery.py:variant=noqd --workdir=runs/mq_noqd
  python -m launch.train --config=configs/maxquery.py:variant=unet --workdir=runs/unet
Another query split (the paper's ablation):
  ... --config.loss.query_distribution.query_split='(24, 4, 4)'
Your own labelled data (segmentation + OOD score maps; no OOD AUROC without OOD annotations):
  ... --config.data.train_source.name=nnunet_raw --config.data.train_source.root=DIR \
      --config.data.eval_source.name=nnunet_raw --config.data.eval_source.root=DIR2 \
      --config.data.num_classes=K --config.model.num_classes=K --config.data.class_names='(...)'

Options after the colon (comma-separated):
  variant=maxquery|noqd|unet  the method (default maxquery);
  smoke                       a tiny run for tests (seconds);
  full                        the full-size configuration (kMaX-like widths, 128² slices,
                              blocks (2, 2, 2); for accelerators);
  3d                          small 3-D volumes instead of 2-D slices.
The default is the reduced configuration of the README's main job: 64² slices and a small
decoder, sized so the three variants train and evaluate in ≲ 15 minutes on a 2-core CPU.
"""

import ml_collections

from configs.sections import common
from configs.sections.abdomen_data import abdomen_data, phantom
from mlsup_jax import losses
from mlsup_jax.data.phantoms.abdomen import AbdomenPhantomSource
from mlsup_jax.methods import maxquery, segmentation

VARIANTS = ("maxquery", "noqd", "unet")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(
    arg, flags={"smoke", "full", "3d"}, values={"variant": "maxquery"}
  )
  variant = values["variant"]
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")
  smoke, full, volumetric = "smoke" in flags, "full" in flags, "3d" in flags
  if smoke and full:
    raise ValueError("Options 'smoke' and 'full' exclude each other.")
  spatial_dims = 3 if volumetric else 2

  if smoke:
    image_size, depth, num_train, num_test, batch, steps = 32, 8, 16, 8, 4, 6
    backbone, hidden, mask_dim, heads, ffn, blocks = (8, 16, 32), 32, 16, 2, 64, (1, 1)
  elif full:
    image_size, depth, num_train, num_test, batch, steps = 128, 32, 2000, 400, 32, 20000
    backbone, hidden, mask_dim, heads, ffn = (32, 64, 128, 256, 320), 256, 128, 8, 2048
    blocks = (2, 2, 2)
  else:
    image_size, depth, num_train, num_test, batch, steps = 64, 16, 400, 120, 8, 500
    backbone, hidden, mask_dim, heads, ffn, blocks = (16, 32, 64, 128), 64, 32, 4, 256, (1, 1, 1)
  if volumetric and not full:
    image_size, num_train, batch = min(image_size, 32), num_train // 2, max(2, batch // 4)

  config = ml_collections.ConfigDict()
  config.method = "segmentation" if variant == "unet" else "maxquery"
  config.seed = 0

  num_classes = AbdomenPhantomSource.NUM_CLASSES
  if variant == "unet":
    # The U-Net baseline keeps dropout for MC Dropout.
    config.model = ml_collections.ConfigDict(
      {
        "name": "unet",
        "num_classes": num_classes,
        "features": backbone,
        "dropout_rate": 0.1,
        "dtype": "float32",
      }
    )
  else:
    config.model = ml_collections.ConfigDict(
      {
        "name": "kmax",
        "num_classes": num_classes,
        "backbone_features": backbone,
        "num_queries": 32,
        "hidden_dim": hidden,
        "mask_dim": mask_dim,
        "num_heads": heads,
        "ffn_dim": ffn,
        "blocks_per_scale": blocks,
        # kMaX's depth-wise 5×5 in the pixel heads; 1 drops it (depth-wise convs are slow on CPU).
        "pixel_head_kernel": 5 if full else 1,
        "dropout_rate": 0.0,  # The mask transformer has no dropout.
        "dtype": "float32",
      }
    )
  # CE + Dice on the semantic output; MaxQuery adds L_qd (the paper states no weight: 1.0).
  weights = {"cross_entropy": 1.0, "soft_dice": 1.0}
  hparams = {}
  if variant != "unet":
    weights["query_distribution"] = 1.0 if variant == "maxquery" else 0.0
    hparams["query_distribution"] = {
      "query_split": (16, 4, 12),
      "class_groups": AbdomenPhantomSource.CLASS_GROUPS,
      "balance": "pixel",  # or "group_balanced" (see losses/mask_transformer.py)
    }
  roles = segmentation.LOSS_ROLES if variant == "unet" else maxquery.LOSS_ROLES
  config.loss = losses.roles_section(roles, {"": weights}, {"": hparams})
  config.optimizer = common.optimizer("adamw", learning_rate=1e-3, weight_decay=1e-4)
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_steps = 0 if smoke else min(50, steps // 10)
  config.optimizer.grad_clip_norm = 1.0

  # Training sees inlier tumour subtypes only; the test split holds 40% OOD subtypes.
  config.data = abdomen_data(
    image_size=image_size,
    spatial_dims=spatial_dims,
    depth=depth,
    num_train=num_train,
    num_test=num_test,
    batch_size=batch,
  )
  if variant == "unet":
    # SML fits its per-class max-logit statistics on training images.
    config.data.calibration_source = phantom(
      image_size, spatial_dims, depth, split="train", num_cases=max(8, num_train // 4)
    )
  config.train = common.train(
    num_steps=steps,
    log_every=2 if smoke else 25,
    checkpoint_every=3 if smoke else 250,
  )
  if variant != "unet":
    config.train.deep_supervision_weight = 1.0  # Every decoder layer's loss, summed.
  config.eval = ml_collections.ConfigDict(
    {
      "batch_size": 4 if smoke else 16,
      # Pixels scored for OOD localization: the ground-truth lesions (inlier tumours negative,
      # OOD tumours positive); see ood/segmentation_report.py for the other regions.
      "ood_region": "lesion",
      "region_dilation": 2,
      "case_reduce": "mean",
      "mc_samples": 2 if smoke else 8,
      "save_figures": True,
      "num_figure_cases": 6,
      # Data without OOD annotations: a missed structure's surface distance (metrics/segmentation
      # `multiclass_report`): "exclude" (counted, not averaged), "diagonal" or a number.
      "missed_distance": "exclude",
    }
  )
  config.mesh = common.mesh()
  return common.finalize(config)
