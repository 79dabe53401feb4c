r"""CFR, DFR and ERM on a frozen encoder, on the spurious-marker radiograph phantom (seed 003 §5a).

  python -m launch.cfr --config=configs/cfr.py --workdir=runs/cfr
  python -m launch.cfr --config=configs/cfr.py --workdir=runs/cfr --seeds=3
  python -m launch.cfr --config=configs/cfr.py:smoke --workdir=/tmp/cfr_smoke

Steps (`mlsup_jax/pipelines/spurious_study.py`): pre-train the encoder (`config.encoder`, an
image-classifier run), embed train / val / test once with it frozen, then fit the ERM linear
probe, ERM (projection + classifier), DFR and CFR on the embeddings and report the WILDS group
metrics on the test split. To use your own encoder instead, set `encoder_weights` to a Flax
msgpack of its variables (`mlsup_jax.spurious.frozen_encoder.save_variables`) and
`encoder.model` to its model section; to use your own data, swap the three `data` sources (any
source whose cases have `image`, `class_id` and — for reporting only — `group`).

Options after the colon: `smoke` (tiny: seconds), `small` (the CI learns test's size).

No `full` size: CFR's own training (ERM / DFR / CFR heads) runs on frozen embeddings, a few
linear layers whose cost does not grow with image size; the paper's scale is that of the
encoder (a frozen CLIP RN50 / ViT the authors only run forward), for which the closest config
here is `configs/image_classifier.py:full` (256² images), benchmarked on its own.
"""

import ml_collections

from configs import image_classifier
from configs.sections import common
from mlsup_jax.data.phantoms.spurious_radiograph import (
  BALANCED_GROUP_WEIGHTS,
  GROUP_NAMES,
  TRAIN_GROUP_WEIGHTS,
)


def spurious_source(split, num_cases, seed, image_size, weights, label="finding") -> dict:
  """A `phantom_spurious_radiograph` source section."""
  return {
    "name": "phantom_spurious_radiograph",
    "split": split,
    "num_cases": num_cases,
    "seed": seed,
    "image_size": image_size,
    "group_weights": tuple(weights),
    "finding": "effusion",
    "label": label,
    "marker_contrast": 0.6,
  }


def head(epochs: int, batch_size: int) -> dict:
  """The projection + classifier and its optimiser (`spurious/projection_head.py`)."""
  return {
    "embedding_dim": 64,
    # 0: a linear projection, as CLIP ViT's `visual.proj` (the default); > 0: an MLP, closer to
    # RN50's attention pool. With the MLP, CFR's InfoNCE term lowers worst-group accuracy on our
    # phantom (docs/results/cfr.md).
    "hidden_dim": 0,
    "dropout": 0.1,  # The authors' --dropout=0.1.
    "learning_rate": 1e-3,
    "weight_decay": 1e-5,  # The authors' --weight_decay 1e-5.
    "batch_size": batch_size,
    "epochs": epochs,
  }


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, _ = common.parse_arg(arg, flags={"smoke", "small"}, values={})
  smoke, small = "smoke" in flags, "small" in flags
  image_size = 32 if smoke or small else 64
  cases = (
    {"pretrain": 96, "train": 96, "val": 64, "test": 64}
    if smoke
    else (
      {"pretrain": 800, "train": 800, "val": 400, "test": 400}
      if small
      else {"pretrain": 2000, "train": 2000, "val": 800, "test": 800}
    )
  )
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data_seed = 0

  # The encoder: a CNN pre-trained on a disjoint, balanced stream labelled with the four
  # (finding, marker) combinations, so it knows both concepts — the role ImageNet / CLIP
  # pre-training plays for Waterbirds. Its data seed differs from the study's splits.
  encoder = image_classifier.get_config("smoke" if smoke else None)
  with encoder.unlocked():
    encoder.model.num_classes = 4
    encoder.model.base_width = 4 if smoke else 8
    encoder.model.depth = 2 if smoke else 3
    for name, split, num in (
      ("train_source", "train", cases["pretrain"]),
      ("eval_source", "val", cases["pretrain"] // 4),
    ):
      encoder.data[name] = spurious_source(
        split, num, 1000, image_size, BALANCED_GROUP_WEIGHTS, label="group"
      )
    encoder.data.class_names = GROUP_NAMES
    encoder.train.num_steps = 4 if smoke else (300 if small else 1000)
    encoder.train.checkpoint_every = encoder.train.num_steps
    encoder.train.tensorboard = False
  config.encoder = encoder
  config.encoder_weights = ""  # A user's msgpack: used instead of pre-training when set.

  config.data = ml_collections.ConfigDict(
    {
      "train": spurious_source("train", cases["train"], 0, image_size, TRAIN_GROUP_WEIGHTS),
      "val": spurious_source("val", cases["val"], 0, image_size, BALANCED_GROUP_WEIGHTS),
      "test": spurious_source("test", cases["test"], 0, image_size, BALANCED_GROUP_WEIGHTS),
      "group_names": GROUP_NAMES,
      "num_classes": 2,
      "embed_batch_size": 256,
    }
  )
  epochs = 2 if smoke else 100
  batch = 32 if smoke else 128  # The authors' --batch_size 128.
  # ERM linear probe: L2 logistic regression (scikit-learn) on the standardised features.
  config.probe = ml_collections.ConfigDict({"C": 1.0})
  config.erm = ml_collections.ConfigDict(head(epochs, batch))
  config.dfr = ml_collections.ConfigDict(
    {"c_grid": (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01), "retrains": 20, "tune_repeats": 5}
  )
  config.cfr = ml_collections.ConfigDict(
    {
      **head(epochs, batch),
      # The authors' CFR builds a fresh model ("fresh"); CLIP's classifier there is its text
      # tower's class prompts, a prior we do not have. "erm" starts from the ERM head instead.
      "init": "fresh",
      "correct_per_class": 20,  # The authors' cmnist variant: 20 correct samples a class.
      "negatives": 16,  # The authors' negative_k.
      "negative_mode": "hard_other_class",
      "positives": 16,  # The authors' positive_k.
      "contrast_weight": 1.0,
      "contrast_temperature": 1.0,  # self.tau = 1.
      "tsc_weight": 1.0,  # --image_weight 1.0.
      "tsc_temperature": 0.07,
      "tsc_target_weight": 0.2,  # TSC(tw=0.2).
      "tsc_queue": 1280,  # TSC(K=128·2·5).
    }
  )
  return config
