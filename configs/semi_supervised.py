r"""Semi-supervised segmentation on the ACDC-like cardiac phantom: one base, the usual baselines.

Train and evaluate (1 labelled patient, mean teacher):
  python -m launch.train --config=configs/semi_supervised.py --workdir=runs/mt
  python -m launch.train --config=configs/semi_supervised.py:kind=labelled_only --workdir=runs/lo
  python -m launch.train --config=configs/semi_supervised.py:kind=fixmatch,labelled=3 \
      --workdir=runs/fm
Smoke run (seconds on a CPU):
  python -m launch.train --config=configs/semi_supervised.py:smoke --workdir=runs/ssl_smoke
Your own data: replace both roles' base (a labelled source whose examples group into patients by
`patient_ids` / `case_ids`), e.g.
  ... --config.data.train_source.base.name=nifti_folder --config.data.train_source.base.root=DIR \
      --config.data.streams.unlabelled.source.base.name=nifti_folder \
      --config.data.streams.unlabelled.source.base.root=DIR

Options after the colon (comma-separated):
  kind=labelled_only|mean_teacher|uamt|fixmatch|cps|action|action_pp|arco|mona  the method
                  (default mean_teacher);
  labelled=N      labelled training patients (default 1; the analogue of ACDC's 1 / 3 / 7);
  sampling=uniform|spatial|index  how the contrast draws its queries (ARCO: spatial / index);
  antithetic      ARCO's antithetic draws;
  pretrain        ACTION's two distillation pretraining stages first (kind=action / action_pp);
  small           32² slices, 12 training patients, 400 steps (the learns test's size);
  full            the authors' scale, for accelerators: ACDC-like 256² slices (SSL4MIS's patch),
                  70 / 10 / 20 patients of 10 slices (ACDC's split), SSL4MIS's 5-level U-Net
                  (16 … 256), 30000 steps and the code's contrast sizes (256 queries, 512
                  negatives, TSC queue 12288); 4 labelled + 8 unlabelled slices a step as the
                  other sizes (ACTION++'s code: batch 4);
  smoke           a tiny run for tests.

Model selection: `python -m launch.semi_supervised` (the study) evaluates every kept checkpoint
on the validation patients (`data.selection_source`), picks the best by `eval.select`, and tests
only that one (`pipelines/model_selection.py`); `launch.train` alone reports the last step on
the test patients.

Data: 20 training patients of 8 slices (48², base to apex; `data/phantoms/cardiac.py`), the first
`labelled` of them labelled (`semi_supervised_split`), the others unlabelled; 3 validation and 6
test patients (fixed, disjoint by patient). Each step: 4 labelled and 8 unlabelled slices (1 : 2),
flips and rotations (the weak view), and a strong photometric view of the unlabelled slices
(brightness and noise).
"""

import ml_collections

from configs.sections import common
from mlsup_jax import losses
from mlsup_jax.data.phantoms.cardiac import CardiacPhantomSource
from mlsup_jax.methods.semi_supervised import KINDS, LOSS_ROLES

# The unsupervised term each kind uses by default (soft targets for the teachers, hard labels
# for FixMatch and CPS).
UNSUPERVISED = {
  "labelled_only": "pseudo_label_mse",
  "mean_teacher": "pseudo_label_mse",
  "uamt": "pseudo_label_mse",
  "fixmatch": "pseudo_label_ce",
  "cps": "pseudo_label_ce",
  "action": "pseudo_label_ce",
  "action_pp": "pseudo_label_ce",
  "arco": "pseudo_label_ce",
  "mona": "pseudo_label_ce",
}
ACTION_KINDS = ("action", "action_pp", "arco", "mona")  # ACTION's fine-tuning base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(
    arg,
    flags={"smoke", "small", "full", "antithetic", "pretrain"},
    values={"kind": "mean_teacher", "labelled": "1", "sampling": "uniform"},
  )
  kind, smoke = values["kind"], "smoke" in flags
  explicit_sampling = "sampling=" in (arg or "")
  sizes_given = [f for f in ("smoke", "small", "full") if f in flags]
  if len(sizes_given) > 1:
    raise ValueError(f"Give at most one of smoke, small and full; got {sizes_given}.")
  size_name = sizes_given[0] if sizes_given else "default"
  if kind not in KINDS:
    raise ValueError(f"Unknown kind {kind!r}; expected one of {KINDS}.")
  labelled = int(values["labelled"])
  # image size, slices per patient, train / val / test patients, steps, U-Net widths
  size, slices, train_patients, val_patients, test_patients, steps, features = {
    "smoke": (32, 4, 4, 1, 2, 6, (8, 16)),
    "small": (32, 8, 12, 2, 4, 400, (8, 16, 32)),
    "default": (48, 8, 20, 3, 6, 800, (16, 32, 64)),
    "full": (256, 10, 70, 10, 20, 30000, (16, 32, 64, 128, 256)),
  }[size_name]
  contrast_size = "default" if size_name == "full" else size_name  # the code's sizes

  config = ml_collections.ConfigDict()
  config.method = "semi_supervised"
  config.seed = 0
  config.model = ml_collections.ConfigDict(
    {
      "name": "unet",
      "num_classes": CardiacPhantomSource.NUM_CLASSES,
      "features": features,
      "dropout_rate": 0.0,
      "dtype": "float32",
      # Pixel embeddings for the contrastive term (ReCo / ACTION use 256 on a ResNet; our
      # U-Net's decoder has 16 + 32 + 64 channels).
      "embedding_dim": 64 if kind in ACTION_KINDS else 0,
    }
  )
  # ACTION's code: 0.5 (CE + Dice) + unsupervised + 0.01 regional contrast.
  supervised = 0.5 if kind in ACTION_KINDS else 1.0
  config.loss = losses.roles_section(
    LOSS_ROLES,
    {
      "supervised": {"cross_entropy": supervised, "soft_dice": supervised},
      "unsupervised": {UNSUPERVISED[kind]: 1.0},
      "contrast": {"regional_contrast": 0.01} if kind in ACTION_KINDS else {},
    },
    {
      "supervised": {"soft_dice": {"include_background": False}},
      "contrast": {
        "regional_contrast": {
          # ACTION / ARCO: 256 queries, 512 negatives; fewer at the smaller sizes (a multiple of
          # the 16 sampling groups), where the contrast would otherwise dominate the CPU step.
          "num_queries": {"smoke": 32, "small": 64, "default": 256}[contrast_size],
          "num_negatives": {"smoke": 32, "small": 128, "default": 512}[contrast_size],
          # ARCO: stratified groups over space unless asked otherwise.
          "sampling": "spatial" if kind == "arco" and not explicit_sampling else values["sampling"],
          "antithetic": "antithetic" in flags,
        }
      },
    },
  )
  config.optimizer = common.optimizer("adamw", learning_rate=1e-3, weight_decay=1e-4)
  config.optimizer.schedule = "constant" if smoke else "cosine"
  config.semi = ml_collections.ConfigDict(
    {
      "kind": kind,
      # λ(t) = unsup_weight · exp(−5 (1 − t / rampup_steps)²) (SSL4MIS: 0.1 over 40 % of the run).
      "unsup_weight": 0.1 if kind in ("mean_teacher", "uamt") else 1.0,
      "rampup_steps": max(steps * 2 // 5, 1),
      "ema_decay": 0.99,  # mean teacher / UA-MT
      "num_passes": 2 if smoke else 4,  # UA-MT's teacher passes
      # FixMatch's confidence; ACTION's "strong threshold" (its image weight counts pixels above).
      "threshold": 0.97 if kind in ACTION_KINDS else 0.95,
      "weak_threshold": 0.7,  # ACTION: unlabelled pixels contrasted above this confidence
      "cutmix": kind in ("fixmatch", *ACTION_KINDS),
      "cutmix_min": 0.25,
      "cutmix_max": 0.5,
      # ARCO / MONA's equivariance: KL between the prediction of a TPS-warped weak view and the
      # warped teacher prediction, on confident (≥ 0.7) foreground pixels (the authors' code:
      # weight 1, σ 0.01 on a 3 × 3 grid of control points).
      "equivariance": {"weight": 1.0, "threshold": 0.7, "grid": 3, "sigma": 0.01},
      # ARCO / MONA's nearest-neighbour memory term (their code: weight 1, a queue of K = 36
      # teacher embeddings, the 5 nearest; its embeddings are whole maps, ours are pooled to 4
      # cells per axis).
      "memory": {
        "weight": 1.0 if kind in ("arco", "mona") else 0.0,
        "size": 36,
        "topk": 5,
        "pool": 4,
      },
      # ACTION's two distillation pretraining stages, each this long (the authors: 30 k
      # iterations each before 30 k of fine-tuning; `pretrain`: half the fine-tuning length).
      # Off by default: on the phantom they help on 2 of 3 seeds at twice the steps (see
      # docs/results/semi_supervised.md).
      "pretrain_steps": (steps // 2) if "pretrain" in flags else 0,
      "distill": {
        "weight": 1.0,
        "latent_dim": 16 if smoke else 128,
        "output_pool": 4,
        "queue_size": 36,
        "student_temperature": 0.1,
        "teacher_temperature": 0.01,
      },
      # ACTION++'s supervised adaptive contrast (kind=action_pp; the authors' 2-D constants,
      # fewer anchors and a shorter queue at the smaller sizes).
      "tsc": {
        "weight": 0.01,
        "anchors_per_class": {"smoke": 16, "small": 64, "default": 256}[contrast_size],
        "queue_size": {"smoke": 128, "small": 3072, "default": 12288}[contrast_size],
        "target_weight": 0.1,
        "temperature_low": 0.07,
        "contrast_temperature_low": 0.1,  # the regional contrast's τ follows the same cycle
        "temperature_high": 1.0,
        "period": 0.1,
      },
    }
  )
  phantom = {"name": "phantom_cardiac", "slices": slices, "image_size": size, "seed": 0}
  train = {**phantom, "split": "train", "num_patients": train_patients}

  def split(role):
    return {"name": "semi_supervised_split", "base": train, "role": role, "num_labelled": labelled}

  config.data = ml_collections.ConfigDict(
    {
      "train_source": split("labelled"),
      "eval_source": {**phantom, "split": "test", "num_patients": test_patients},
      "selection_source": {**phantom, "split": "val", "num_patients": val_patients},
      "streams": {
        "unlabelled": common.stream(
          split("unlabelled"),
          8,
          ("random_dihedral",),
          require_label=False,
          views={"strong": ("random_brightness", "random_noise")},
        )
      },
      "batch_size": 4,
      "seed": 0,
      "spatial_dims": 2,
      "num_classes": CardiacPhantomSource.NUM_CLASSES,
      "class_names": CardiacPhantomSource.CLASS_NAMES,
      "require_label": True,
      "train_transforms": ("random_dihedral",),
      "eval_transforms": (),
      "brightness_delta": 0.3,
      "noise_std": 0.1,
      "worker_count": 0,
      "read_threads": 2,
    }
  )
  # Every checkpoint is kept for model selection on the validation patients.
  config.train = common.train(
    num_steps=steps, log_every=2 if smoke else 50, checkpoint_every=3 if smoke else 100
  )
  config.train.keep_checkpoints = steps // config.train.checkpoint_every
  config.eval = ml_collections.ConfigDict(
    {
      "batch_size": 8,
      "missed_distance": "exclude",
      # Nominal voxel size in mm (slice, row, column): ACDC-like 10 mm slices; the phantom's
      # field of view is ~290 mm, so 48 px are 6 mm each (smoke: 32 px of 9 mm).
      "spacing": (10.0, 288.0 / size, 288.0 / size),
      "select": {"metric": "dice", "mode": "max"},
    }
  )
  config.mesh = common.mesh()
  return common.finalize(config)
