r"""OTDD between two labelled image datasets (class folders or prepared TFDS splits).

  python -m launch.otdd --dataset_a=data/internal --dataset_b=data/external --out=runs/otdd.json
  python -m launch.otdd --dataset_a=tfds:mnist --dataset_b=tfds:mnist --split_b=test \
      --tfds_data_dir=~/tensorflow_datasets --image_size=28 --rounds=10 --max_samples=2000

Each dataset is a folder of class sub-folders (`root/<class>/*.png`) or `tfds:<name>` prepared
as array_record (nothing is downloaded). Features are the flattened pixels at `--image_size`²
(the OTDD paper's choice for small images); for embeddings call `mlsup_jax.ot.embed` and
`mlsup_jax.ot.otdd` from Python. With `--rounds` > 1 each round re-draws the `--max_samples`
subsample (seed + round), as MedShift's "mean and std over ten rounds". Prints the distance
and writes every round's `OTDDResult` to `--out` as JSON.
"""

import json
import os

import numpy as np
from absl import app, flags

from mlsup_jax.core import compilation_cache
from mlsup_jax.ot import SinkhornSettings, flatten_pixels, otdd
from mlsup_jax.ot.labelled_images import load_labelled_images

_A = flags.DEFINE_string("dataset_a", None, "Class-folder root or tfds:<name>.")
_B = flags.DEFINE_string("dataset_b", None, "Class-folder root or tfds:<name>.")
_SPLIT_A = flags.DEFINE_string("split_a", "train", "TFDS split of A.")
_SPLIT_B = flags.DEFINE_string("split_b", "train", "TFDS split of B.")
_DATA_DIR = flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir (default: TFDS's).")
_OUT = flags.DEFINE_string("out", "otdd.json", "Where the JSON results go.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 28, "Images are resized to this side.")
_CHANNELS = flags.DEFINE_integer("channels", 1, "1 (grey) or 3 (RGB).")
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", None, "Read at most this many per dataset.")
_INNER_OT = flags.DEFINE_enum("inner_ot", "gaussian", ["gaussian", "exact"], "Label cost.")
_EPSILON = flags.DEFINE_float("epsilon", 0.1, "Absolute ε in units of the ½-cost.")
_MAX_SAMPLES = flags.DEFINE_integer("max_samples", 10000, "Outer samples per side.")
_MIN_CLASS_COUNT = flags.DEFINE_integer("min_class_count", 2, "Smaller classes are dropped.")
_MAX_ITERATIONS = flags.DEFINE_integer("max_iterations", 5000, "Sinkhorn iteration cap.")
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Rounds with re-drawn subsamples (seed + round).")
_SEED = flags.DEFINE_integer("seed", 0, "Base seed.")
flags.mark_flags_as_required(["dataset_a", "dataset_b"])


def _load(spec: str, split: str):
  images, labels, class_names = load_labelled_images(
    spec,
    image_size=_IMAGE_SIZE.value,
    channels=_CHANNELS.value,
    split=split,
    data_dir=_DATA_DIR.value,
    max_examples=_MAX_EXAMPLES.value,
    seed=_SEED.value,
  )
  return flatten_pixels(images), labels, class_names


def main(argv):
  del argv
  # From the environment, not a flag: launch.common owns `--compilation_cache`, and both
  # modules may be imported into one process.
  compilation_cache.enable_compilation_cache(os.environ.get("MLSUP_JAX_COMPILATION_CACHE"))
  features_a, labels_a, names_a = _load(_A.value, _SPLIT_A.value)
  features_b, labels_b, names_b = _load(_B.value, _SPLIT_B.value)
  solver = SinkhornSettings(max_iterations=_MAX_ITERATIONS.value)
  results = [
    otdd(
      features_a, labels_a, features_b, labels_b,
      inner_ot=_INNER_OT.value, epsilon=_EPSILON.value, max_samples=_MAX_SAMPLES.value,
      min_class_count=_MIN_CLASS_COUNT.value, solver=solver, seed=_SEED.value + r,
    )
    for r in range(_ROUNDS.value)
  ]  # fmt: skip
  distances = np.array([r.distance for r in results])
  divergences = np.array([r.divergence for r in results])
  summary = {
    "a": {"spec": _A.value, "split": _SPLIT_A.value, "n": len(labels_a), "classes": names_a},
    "b": {"spec": _B.value, "split": _SPLIT_B.value, "n": len(labels_b), "classes": names_b},
    "features": f"pixels {_IMAGE_SIZE.value}x{_IMAGE_SIZE.value}x{_CHANNELS.value}",
    "distance_mean": float(distances.mean()),
    "distance_std": float(distances.std()),
    "divergence_mean": float(divergences.mean()),
    "divergence_std": float(divergences.std()),
    "converged": all(r.converged for r in results),
    "rounds": [r.to_json() for r in results],
  }
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w") as f:
    json.dump(summary, f, indent=2)
  print(
    f"OTDD({_A.value}, {_B.value}) = {summary['distance_mean']:.6g} ± "
    f"{summary['distance_std']:.3g} (distance, {len(results)} round(s)); divergence "
    f"{summary['divergence_mean']:.6g} (microsoft/otdd's ≈ ½·OTDD²). Wrote {_OUT.value}."
  )


if __name__ == "__main__":
  app.run(main)
