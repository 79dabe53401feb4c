r"""Single-label radiograph retrieval with a learned embedding: OSCARS and its baselines.

This is the retrieval model the OSCARS pipeline (`configs/oscars.py`, `launch.oscars`) trains
once per row; its data are annotation files the pipeline writes (`bin`, `anomaly`, `query`), so
run the pipeline, or point the sources at its files:
  python -m launch.train --config=configs/embedding_retrieval.py:loss=triplet \
    --config.data.train_source.arrays_file=runs/oscars/annotations/train.npz \
    --config.data.eval_source.arrays_file=runs/oscars/annotations/eval.npz --workdir=runs/triplet

Options after the colon: `loss=oscars|triplet|supcon|multi_similarity|circle|fastap` (default
oscars); `intra=<λ>` (OSCARS's intra-class weight, default 0.05); sizes `smoke`, `tiny`,
`small`, default (64²), `full` (224², the thesis's ResNet-18).

Data: a MURA-like single-label set (`external_source`): five visually distinct classes, 30 % of
the images outliers (intensity, noise, artefact shifts and label noise).

Spec choices (thesis_ch5_6 §3): ResNet-18 trained from scratch (no weights can be downloaded;
`nn/resnet.load_torchvision_weights` loads user-supplied ones); the 512·width pooled feature is
the embedding, not normalised in training (cosine at retrieval); every row uses the same
network, data, batch and optimizer. AdamW 1e-3 instead of the thesis's SGD 1e-3 × 50 epochs,
for every row alike: the phantom runs are a few hundred steps from scratch.
"""

import ml_collections

from configs.sections import common
from mlsup_jax import losses
from mlsup_jax.methods.embedding_retrieval import LOSS_ROLES

LOSSES = ("oscars", "triplet", "supcon", "multi_similarity", "circle", "fastap")
TERM = {"oscars": "oscars_quadruplet"}

# image size, width multiplier, training steps, batch, (train / eval external cases)
SIZES = {
  "smoke": (32, 0.125, 4, 16, (64, 32)),
  "tiny": (32, 0.125, 200, 64, (600, 300)),
  "small": (32, 0.25, 500, 64, (1200, 600)),
  "default": (64, 0.5, 1500, 64, (2000, 1000)),
  "full": (224, 1.0, 8000, 64, (20000, 5000)),
}
# (intensity, noise, artefact, foreign, label_noise) shares of the external (noisy) set: 30 %
# outliers, none foreign (with the modalities content every modality is already a class).
EXTERNAL_SHIFTS = (0.08, 0.08, 0.08, 0.0, 0.06)
NUM_QUERIES = 0.2  # share of the external evaluation split used as queries (the first ones)


def external_source(
  split: str, num_cases: int, image_size: int, seed: int = 1, shifts=EXTERNAL_SHIFTS
) -> dict:
  """The MURA-like single-label phantom: MedShift's shifted phantom with the modalities content
  (radiograph, CT, brain MR, ultrasound, dermoscopy: classes as distinct as MURA's body parts),
  `shifts` of it made outliers. Seed 1 and 30 % outliers: the external site; seed 0 and no
  shift: the clean internal site the detectors learn."""
  return {
    "name": "phantom_shifted_radiograph",
    "split": split,
    "num_cases": num_cases,
    "seed": seed,
    "image_size": image_size,
    "content": "modalities",
    "shift_fractions": tuple(shifts),
    "severity": 1.0,
  }


def size_of(flags: set[str]) -> str:
  return next((s for s in ("smoke", "tiny", "small", "full") if s in flags), "default")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(
    arg, flags={"smoke", "tiny", "small", "full"}, values={"loss": "oscars", "intra": "0.05"}
  )
  if values["loss"] not in LOSSES:
    raise ValueError(f"loss must be one of {LOSSES}, got {values['loss']!r}.")
  size_name = size_of(flags)
  image_size, width, steps, batch, (n_train, n_eval) = SIZES[size_name]
  config = ml_collections.ConfigDict()
  config.method = "embedding_retrieval"
  config.seed = 0
  config.model = ml_collections.ConfigDict(
    {
      "name": "resnet",
      "stage_sizes": (2, 2, 2, 2),
      "width_multiplier": width,
      "small_input": image_size <= 64,
      "dtype": "float32",
    }
  )
  term = TERM.get(values["loss"], values["loss"])
  config.loss = losses.roles_section(LOSS_ROLES, {"": {term: 1.0}})
  # OSCARS's λ (the thesis's 0.05; its Fig. 6.4 ablates it): the weight of the intra-class term.
  config.loss.oscars_quadruplet.intra_weight = float(values["intra"])
  config.optimizer = common.optimizer("adamw", learning_rate=1e-3, weight_decay=1e-5)
  config.data = ml_collections.ConfigDict(
    {
      "train_source": {
        "name": "annotated",
        "base": external_source("train", n_train, image_size),
        "arrays_file": "",  # set by the OSCARS pipeline
      },
      "eval_source": {
        "name": "annotated",
        "base": external_source("test", n_eval, image_size),
        "arrays_file": "",
      },
      "batch_size": batch,
      "seed": 0,
      "spatial_dims": 2,
      "num_classes": None,
      "require_label": False,
      "train_transforms": (),
      "eval_transforms": (),
      "worker_count": 0,
      "read_threads": 2,
    }
  )
  config.train = common.train(
    num_steps=steps, log_every=2 if size_name == "smoke" else 50, checkpoint_every=500
  )
  config.eval = ml_collections.ConfigDict({"batch_size": 64, "ks": (1, 5, 10, 50, 100)})
  config.mesh = common.mesh()
  return common.finalize(config)
