r"""MORSE (a rendering head with a stochastic mixture of experts) on any segmentation backbone.

Train and evaluate (U-Net + MORSE on the cardiac phantom, every training slice labelled):
  python -m launch.train --config=configs/morse.py --workdir=runs/morse
The same backbone alone, and the ablations:
  python -m launch.train --config=configs/morse.py:variant=backbone --workdir=runs/unet
  python -m launch.train --config=configs/morse.py:variant=implicit_only --workdir=runs/implicit
Another backbone (SCU-Net, or kMaX's pixel decoder):
  python -m launch.train --config=configs/morse.py:backbone=scunet --workdir=runs/morse_scunet
3-D (abdominal phantom volumes; U-Net or kMaX backbone), smoke size:
  python -m launch.train --config=configs/morse.py:3d,smoke --workdir=/tmp/morse_3d
The study over seeds (every variant, mean ± std, the claims per seed):
  python -m launch.morse --workdir=runs/morse_study --seeds=3

Options after the colon (comma-separated):
  variant=morse|implicit_only|moe_only|no_stochastic_gating|backbone   (default morse: the
      paper's head — implicit point head + MoE + stochastic gating; `backbone` trains the backbone
      alone with `configs`' plain segmentation method);
  backbone=unet|scunet|kmax;  small (32² slices, 12 patients: the learns test);  smoke;  3d;
  full (2-D, for accelerators: the authors' scale — ACDC-like 224² slices, 70 training
      patients of 10 slices (ACDC's 70 / 10 / 20 split of SSL4MIS, which MORSE's code builds on),
      a 5-level U-Net (16 … 256, SSL4MIS's), the authors' 256-wide experts and point MLPs,
      batch 24 and 30000 steps (SSL4MIS's 2-D defaults; MORSE's paper states neither)).

Data: the ACDC-like cardiac phantom (`data/phantoms/cardiac.py`: a thin myocardium ring around
the LV, the RV beside it), 20 training patients of 8 slices at 48², all labelled; 6 test
patients. Loss on the coarse logits: 0.5 CE + 0.5 Dice (the authors'); point loss warm-up
(`methods/morse.py`). AdamW 1e-3 with cosine decay for every variant (the authors' SGD 0.01 with
polynomial decay is one `--config.optimizer` change away); the last step is evaluated.
"""

import ml_collections

from configs.sections import common
from configs.sections.abdomen_data import abdomen_data
from mlsup_jax import losses
from mlsup_jax.data.phantoms.abdomen import AbdomenPhantomSource
from mlsup_jax.data.phantoms.cardiac import CardiacPhantomSource
from mlsup_jax.methods.morse import LOSS_ROLES

VARIANTS = {
  "morse": {"implicit": True, "moe": True, "stochastic_gating": True},
  "implicit_only": {"implicit": True, "moe": False, "stochastic_gating": False},
  "moe_only": {"implicit": False, "moe": True, "stochastic_gating": True},
  "no_stochastic_gating": {"implicit": True, "moe": True, "stochastic_gating": False},
  "backbone": None,
}


def backbone_section(name: str, num_classes: int, features, smoke: bool) -> dict:
  """The backbone's model section (widths scaled to the phantom)."""
  if name == "unet":
    return {
      "name": "unet",
      "num_classes": num_classes,
      "features": tuple(features),
      "dropout_rate": 0.0,
    }
  if name == "scunet":
    return {"name": "scunet", "num_classes": num_classes, "dropout_rate": 0.0}
  if name == "kmax":
    return {
      "name": "kmax",
      "num_classes": num_classes,
      "num_queries": 8,
      "backbone_features": tuple(features),
      "hidden_dim": 16 if smoke else 32,
      "mask_dim": 8 if smoke else 16,
      "num_heads": 2,
      "ffn_dim": 32 if smoke else 64,
      "blocks_per_scale": (1,) * (len(features) - 1),
      "pixel_head_kernel": 1,
    }
  raise ValueError(f"backbone must be unet, scunet or kmax; got {name!r}.")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(
    arg, flags={"smoke", "small", "full", "3d"}, values={"variant": "morse", "backbone": "unet"}
  )
  smoke, small, volumetric = "smoke" in flags, "small" in flags, "3d" in flags
  full = "full" in flags
  if len({"smoke", "small", "full"} & flags) > 1 or (full and volumetric):
    raise ValueError("Give at most one of smoke, small and full; full is 2-D (no 3d).")
  variant, backbone = values["variant"], values["backbone"]
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}.")
  if volumetric and backbone == "scunet":
    raise ValueError("SCU-Net is a 2-D network: use backbone=unet or kmax with 3d.")
  size, slices, train_patients, test_patients, steps, features = (
    (32, 4, 4, 2, 4, (8, 16))
    if smoke
    else ((32, 8, 12, 6, 400, (8, 16, 32)) if small else (48, 8, 20, 6, 1000, (16, 32, 64)))
  )
  if full:
    size, slices, train_patients, test_patients = 224, 10, 70, 20
    steps, features = 30000, (16, 32, 64, 128, 256)
  if volumetric:
    num_classes = AbdomenPhantomSource.NUM_CLASSES
    data = abdomen_data(
      image_size=32,
      spatial_dims=3,
      depth=8,
      num_train=8 if smoke else 100,
      num_test=4 if smoke else 20,
      batch_size=8 if smoke else 4,
      ood_fraction=0.0,
    )
    pixels = 32 * 32 * 8
  else:
    num_classes = CardiacPhantomSource.NUM_CLASSES
    phantom = {"name": "phantom_cardiac", "slices": slices, "image_size": size, "seed": 0}
    data = ml_collections.ConfigDict(
      {
        "train_source": {**phantom, "split": "train", "num_patients": train_patients},
        "eval_source": {**phantom, "split": "test", "num_patients": test_patients},
        "batch_size": 24 if full else 8,
        "seed": 0,
        "spatial_dims": 2,
        "num_classes": num_classes,
        "class_names": CardiacPhantomSource.CLASS_NAMES,
        "require_label": True,
        "train_transforms": ("random_dihedral",),
        "eval_transforms": (),
        "worker_count": 0,
        "read_threads": 2,
      }
    )
    pixels = size * size

  config = ml_collections.ConfigDict()
  config.seed = 0
  section = backbone_section(backbone, num_classes, features, smoke)
  if VARIANTS[variant] is None:
    config.method = "segmentation"
    config.model = ml_collections.ConfigDict(section)
  else:
    config.method = "morse"
    width = 8 if smoke else (256 if full else 32)  # The authors' 256 at 224² slices.
    config.model = ml_collections.ConfigDict(
      {
        "name": "morse",
        "backbone": section,
        "num_classes": num_classes,
        "feature_dim": width,
        "expert_dim": width,
        "max_dropped_experts": 4,  # The authors' use_num (2 for TransUNet's 3 scales).
        "fc_dim": width if full else 2 * width,  # The authors' fc_dim: 256.
        "num_fc": 3,
        # The authors' 2048 training points and 8192 refined points are ~3 % and 12.5 % of a
        # 256² slice; the same fractions here.
        "train_points": max(64, pixels // 32),
        "oversample": 3.0,
        "importance": 0.75,
        "subdivision_steps": 2,
        "subdivision_points": max(64, pixels // 8),
        **VARIANTS[variant],
      }
    )
    config.point_loss = ml_collections.ConfigDict({"start_fraction": 0.5, "max_weight": 0.5})
  config.loss = losses.roles_section(LOSS_ROLES, {"": {"cross_entropy": 0.5, "soft_dice": 0.5}})
  config.optimizer = common.optimizer("adamw", learning_rate=1e-3, weight_decay=1e-4)
  config.optimizer.schedule = "constant" if smoke else "cosine"
  config.data = data
  config.train = common.train(
    num_steps=steps, log_every=2 if smoke else 50, checkpoint_every=3 if smoke else steps
  )
  config.eval = ml_collections.ConfigDict(
    {
      "batch_size": 4 if smoke else 16,
      "mc_samples": 0,
      "missed_distance": "exclude",
      "save_figures": not smoke,
      "num_figure_cases": 4,
      "ood_region": "lesion",
      "region_dilation": 2,
      "case_reduce": "mean",
    }
  )
  config.mesh = common.mesh()
  return common.finalize(config)
