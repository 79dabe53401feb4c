r"""Image classification (a small CNN) on the chest-radiograph phantom: MedShift's classifier G.

Train and evaluate (trains on the clean internal phantom, tests on its test split):
  python -m launch.train --config=configs/image_classifier.py --workdir=runs/classifier
Smoke run (seconds on a CPU):
  python -m launch.train --config=configs/image_classifier.py:smoke --workdir=runs/cls_smoke

Options after the colon: `smoke` (tiny, for tests), `full` (256² images; accelerators).
MedShift (`configs/medshift.py`) reuses this config and swaps the data sources per level.
"""

import ml_collections

from configs.sections import common
from mlsup_jax import losses
from mlsup_jax.data.phantoms.radiograph import CLASS_NAMES, DEFAULT_CLASS_WEIGHTS
from mlsup_jax.methods.image_classifier import LOSS_ROLES


def phantom_source(
  *, split: str, num_cases: int, seed: int, image_size: int, shift_fractions=(0.0,) * 5
) -> dict:
  """A `phantom_shifted_radiograph` source config (all fractions 0: a clean dataset)."""
  return {
    "name": "phantom_shifted_radiograph",
    "split": split,
    "num_cases": num_cases,
    "seed": seed,
    "image_size": image_size,
    "class_weights": DEFAULT_CLASS_WEIGHTS,
    "shift_fractions": tuple(shift_fractions),
    "severity": 1.0,
  }


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, _ = common.parse_arg(arg, flags={"smoke", "full"}, values={})
  smoke, full = "smoke" in flags, "full" in flags
  image_size = 32 if smoke else (256 if full else 64)
  config = ml_collections.ConfigDict()
  config.method = "image_classifier"
  config.seed = 0
  config.model = ml_collections.ConfigDict(
    {
      "name": "cnn_classifier",
      "num_classes": len(CLASS_NAMES),
      "base_width": 4 if smoke else 16,
      "depth": 2 if smoke else 4,
      "dropout": 0.0,
      "dtype": "float32",
    }
  )
  config.loss = losses.roles_section(LOSS_ROLES, {"": {"cross_entropy": 1.0}})
  config.optimizer = common.optimizer("adam", learning_rate=1e-3, weight_decay=1e-6)
  num_cases = 96 if smoke else (20000 if full else 2000)
  config.data = ml_collections.ConfigDict(
    {
      "train_source": phantom_source(
        split="train", num_cases=num_cases, seed=0, image_size=image_size
      ),
      "eval_source": phantom_source(
        split="test", num_cases=num_cases // 4, seed=0, image_size=image_size
      ),
      "batch_size": 8 if smoke else 32,
      "seed": 0,
      "spatial_dims": 2,
      "num_classes": None,  # Pixel-label range check: no pixel labels here.
      "class_names": CLASS_NAMES,
      "require_label": False,
      "train_transforms": (),
      "eval_transforms": (),
      "worker_count": 0,
      "read_threads": 2,
    }
  )
  steps = 4 if smoke else (5000 if full else 1500)
  config.train = common.train(num_steps=steps, log_every=2 if smoke else 100, checkpoint_every=500)
  config.eval = ml_collections.ConfigDict({"batch_size": 8 if smoke else 64})
  config.mesh = common.mesh()
  return common.finalize(config)
