r"""LTUDA: a multi-organ model from sub-datasets that each label one organ (seed 002).

Train and evaluate (CDA then CDA + PDA, CarveMix, on the multi-organ abdominal phantom):
  python -m launch.train --config=configs/ltuda.py --workdir=runs/ltuda
The baselines, stage 1 alone and CarveMix:
  python -m launch.train --config=configs/ltuda.py:method=naive --workdir=runs/naive
  python -m launch.train --config=configs/ltuda.py:method=marginal --workdir=runs/marginal
  python -m launch.train --config=configs/ltuda.py:method=full --workdir=runs/full
  python -m launch.train --config=configs/ltuda.py:method=ltuda_cda --workdir=runs/cda
  python -m launch.train --config=configs/ltuda.py:mixing=cutmix --workdir=runs/cutmix
The study (every row × seeds, checkpoints chosen on the validation cases):
  python -m launch.ltuda --workdir=runs/ltuda_study --seeds=3
Smoke run:  ... --config=configs/ltuda.py:smoke;   3-D volumes: ...:3d,smoke

Options after the colon (comma-separated):
  method=ltuda|ltuda_cda|naive|marginal|full  (default ltuda: both stages; ltuda_cda: stage 1
      only; naive: unknown organs as background; marginal: Shi et al.'s marginal + exclusion
      losses; full: every sub-dataset labels every organ — the upper bound);
  mixing=carvemix|cutmix (default carvemix: better on every seed of the study);
  small (48²: the study's size);  tiny (`small` with one image per sub-dataset per step: the
  learns test's);  smoke;  3d;  full (2-D, for accelerators: the authors' scale — 256² slices,
  a 5-level U-Net (16 … 256) with 64-d prototype features (the code's), one slice per
  sub-dataset a step (the code's batch of 4 over the four sets), 8000 + 4000 steps: our stand-in
  for their 50 epochs, whose length in steps their toy set fixes and ours does not). The size
  flag `full` is not `method=full` (the fully labelled upper bound); both may be given.

Your own data: each sub-dataset is a `partial_labels` source over any labelled source, e.g. a
NIfTI folder whose label maps use other values (`class_map`: value → organ number):
  --config.data.train_source.base.name=nifti_folder --config.data.train_source.base.root=DIR \
  --config.data.train_source.class_map='{"0": 0, "6": 1}'   (and the same for every stream)

Data: the abdominal phantom with `organs="multi"` (liver, kidneys, spleen, pancreas; the
pancreas small and low-contrast), its training cases split into four disjoint sub-datasets that
each annotate one organ (the paper's toy setting: LiTS / KiTS / spleen / pancreas sets), one
stream each with the same batch size; fully labelled validation (model selection) and test
cases. CT window ±325 HU (the authors'). Weak view: rotation ±30° and zoom 0.75–1.25, each with
probability 0.5. Two strong views mix each image with its cross-set partner: CarveMix (the
partner's annotated organ grown by 2 px; the public code has only CutMix, area 0.02–0.4, aspect
0.3–3.3 — `mixing=cutmix`). CarveMix is the default because it beat CutMix on every seed of
docs/results/ltuda.md. AdamW for every row (see `methods/ltuda.py`).
"""

import ml_collections

from configs.sections import common
from configs.sections.abdomen_data import phantom
from mlsup_jax import losses
from mlsup_jax.data.phantoms.abdomen import MULTI_ORGAN_CLASS_NAMES
from mlsup_jax.methods.ltuda import LOSS_ROLES

ORGANS = MULTI_ORGAN_CLASS_NAMES[1:]  # liver, kidneys, spleen, pancreas
METHODS = ("ltuda", "ltuda_cda", "naive", "marginal", "full")
# The main stream annotates the first organ; one more stream per other organ.
STREAM_OF = {organ: ("" if i == 0 else organ) for i, organ in enumerate(ORGANS)}
SUPERVISED_TERMS = {
  "ltuda": {"partial_bce": 1.0},
  "ltuda_cda": {"partial_bce": 1.0},
  "naive": {"cross_entropy": 1.0, "soft_dice": 1.0},
  "marginal": {"marginal_cross_entropy": 1.0, "exclusion_dice": 1.0},
  "full": {"cross_entropy": 1.0, "soft_dice": 1.0},
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(
    arg,
    flags={"smoke", "tiny", "small", "full", "3d"},
    values={"method": "ltuda", "mixing": "carvemix"},
  )
  method = values["method"]
  if method not in METHODS:
    raise ValueError(f"Unknown method {method!r}; expected one of {METHODS}.")
  smoke, three_d = "smoke" in flags, "3d" in flags
  sizes_given = [f for f in ("smoke", "tiny", "small", "full") if f in flags]
  if len(sizes_given) > 1 or ("full" in flags and three_d):
    raise ValueError(f"Give at most one size (got {sizes_given}); full is 2-D (no 3d).")
  size_name = sizes_given[0] if sizes_given else "default"
  # image size, training cases per sub-dataset, val / test cases, CDA / PDA steps, widths, batch
  size, per_set, num_val, num_test, cda, pda, features, batch = {
    "smoke": (32, 2, 2, 2, 4, 2, (8, 16), 1),
    "tiny": (48, 24, 8, 16, 400, 200, (16, 32, 64), 1),
    "small": (48, 24, 8, 16, 400, 200, (16, 32, 64), 2),
    "default": (64, 48, 16, 32, 800, 400, (16, 32, 64), 2),
    "full": (256, 200, 32, 64, 8000, 4000, (16, 32, 64, 128, 256), 1),
  }[size_name]
  ltuda = method.startswith("ltuda")
  spatial_dims, depth = (3, 16) if three_d else (2, 16)
  if three_d:
    size = 32

  config = ml_collections.ConfigDict()
  config.method = "ltuda"
  config.seed = 0
  config.model = ml_collections.ConfigDict(
    {
      "name": "unet",
      # LTUDA: one sigmoid channel per organ; the baselines: softmax over background + organs.
      "num_classes": len(ORGANS) if ltuda else len(ORGANS) + 1,
      "features": features,
      "dropout_rate": 0.0,
      "dtype": "float32",
      # the prototype heads' features (the code: 64)
      "embedding_dim": 16 if smoke else (64 if size_name == "full" else 32),
    }
  )
  config.loss = losses.roles_section(
    LOSS_ROLES,
    {
      "supervised": SUPERVISED_TERMS[method],
      "pseudo": {"partial_bce": 1.0} if ltuda else {},
      "prototype": {"cross_entropy": 1.0} if ltuda else {},
      # ProtoSeg's weights, as the authors'.
      "alignment": {"prototype_contrast": 0.01, "prototype_distance": 0.001} if ltuda else {},
    },
    {"supervised": {"soft_dice": {"include_background": False}}},
  )
  config.optimizer = common.optimizer("adamw", learning_rate=1e-3, weight_decay=1e-4)
  config.optimizer.schedule = "constant" if smoke else "cosine"
  config.ltuda = ml_collections.ConfigDict(
    {
      "kind": "ltuda" if ltuda else "supervised",
      "pda_steps": pda if method == "ltuda" else 0,
      # The authors' EMA is 0.999 over 50 epochs; 0.99 at our run lengths (as the other
      # teacher-student configs).
      "ema_decay": 0.99,
      "threshold": 0.5,  # sigmoid probability of a (pseudo-)labelled organ
      "mixing": values["mixing"],
      "strong_views": 2,
      "cutmix": {"area_low": 0.02, "area_high": 0.4, "ratio_low": 0.3, "ratio_high": 1 / 0.3},
      "carvemix_margin": 2,  # pixels of context around a pasted organ
      "prototypes": {"per_class": 5, "momentum": 0.999, "epsilon": 0.05, "iterations": 3},
      "eval_head": "unlabelled_prototypes" if method == "ltuda" else "linear",
      # Read every training label map once before training: a value the class map does not name
      # is one clear error then, not a crash mid-run (seconds for a few hundred volumes).
      "check_labels": True,
    }
  )

  def sub_dataset(organ: str, first: int) -> dict:
    known = ORGANS if method == "full" else (organ,)
    return {
      "name": "partial_labels",
      "base": phantom(
        size,
        spatial_dims,
        depth,
        split="train",
        num_cases=4 * per_set,
        organs="multi",
        ood_fraction=0.0,
      ),
      "organs": ORGANS,
      "known": tuple(known),
      "indices": tuple(range(first, first + per_set)),
      "title": organ,
    }

  sources = {organ: sub_dataset(organ, i * per_set) for i, organ in enumerate(ORGANS)}
  train_transforms = ("ct_window", "random_rotate_scale")
  evaluation = dict(organs="multi", ood_fraction=0.0)
  config.data = ml_collections.ConfigDict(
    {
      "train_source": sources[ORGANS[0]],
      "selection_source": phantom(
        size, spatial_dims, depth, split="val", num_cases=num_val, **evaluation
      ),
      "eval_source": phantom(
        size, spatial_dims, depth, split="test", num_cases=num_test, **evaluation
      ),
      "streams": {
        STREAM_OF[organ]: common.stream(sources[organ], batch, train_transforms)
        for organ in ORGANS[1:]
      },
      "batch_size": batch,
      "seed": 0,
      "spatial_dims": spatial_dims,
      "num_classes": len(ORGANS) + 1,
      "class_names": MULTI_ORGAN_CLASS_NAMES,
      "require_label": True,
      "train_transforms": train_transforms,
      "eval_transforms": ("ct_window",),
      "window_level": 0.0,  # ±325 HU (the authors' truncation)
      "window_width": 650.0,
      "rotate_degrees": 30.0,
      "scale_change": 0.25,
      "rotate_axes": (-2, -1),  # the in-plane axes (phantom volumes are (z, y, x))
      "worker_count": 0,
      "read_threads": 2,
    }
  )
  total = cda + (pda if method == "ltuda" else 0)
  config.train = common.train(
    num_steps=cda, log_every=2 if smoke else 40, checkpoint_every=2 if smoke else 40
  )
  config.train.keep_checkpoints = max(total // config.train.checkpoint_every, 1)
  config.eval = ml_collections.ConfigDict(
    {
      "batch_size": 8,
      "missed_distance": "exclude",
      # Nominal pixel size: the whole-abdomen field of view ~350 mm.
      "spacing": (2 * 350.0 / size, 350.0 / size, 350.0 / size),
      "select": {"metric": "dice", "mode": "max"},
      # The authors' evaluation: the largest component per organ (two kidneys).
      "largest_components": {"liver": 1, "kidneys": 2, "spleen": 1, "pancreas": 1},
    }
  )
  config.mesh = common.mesh()
  return common.finalize(config)
