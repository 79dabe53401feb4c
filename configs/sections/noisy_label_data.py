"""The data section shared by the noisy-label methods (MCPM, MW-Net, PINT and their baselines).

One pool of abdominal CT phantom slices is split by `data/sources/corruption.py`
(`noisy_labels`) into a clean meta role (`num_meta` slices, MCPM / MW-Net's meta set; unused by
PINT, so every method trains on the same images) and a training role in which a fraction r of
the masks is corrupted.
Evaluation uses clean labels of separate test slices, or of separate validation slices
(`eval_split="val"`) for choosing hyper-parameters without looking at the test split.
"""

import ml_collections

from configs.sections import common
from mlsup_jax.data.phantoms.abdomen import AbdomenPhantomSource

# The segmentation target: every phantom class, or one structure as a binary task (the papers'
# setting: LIDC nodules for MCPM, the left atrium for PINT) by merging classes before the noise.
TARGETS = {
  "all": (None, AbdomenPhantomSource.CLASS_NAMES),
  "liver": ((0, 1, 1, 1, 1), ("background", "liver")),  # the liver with its tumours
  "lesion": ((0, 0, 1, 1, 1), ("background", "lesion")),  # HCC, cyst, metastasis as one class
}
NOISES = {"dilation": ("dilation",), "erosion": ("erosion",), "elastic": ("elastic", "dilation")}
# Run sizes: image side, pool, meta slices, test slices, batch, steps, U-Net widths.
# "default": 64² (paper: 1906 train / 300 meta on LIDC; the same 1 : 6 meta share);
# "small": 32², a CPU-sized run (the learns tests and README's noise-ratio table); "smoke": tests;
# "full": the papers' scale for accelerators — MCPM's LIDC split (1906 train + 300 meta [S]),
# PINT's anchor length (UA-MT: 6000 iterations [C]), nnU-Net-style widths. Neither paper states
# the image side or batch: 128² slices and batch 16 are our choice (MW-Net's batch of 100 is for
# 32² CIFAR images, UA-MT's 4 for 112×112×80 V-Net patches; PINT's 3-D V-Net is run here as a
# 2-D U-Net, like every noisy-label config). Sweep the batch with `benchmarks.run --batch_sizes`.
SIZES = {
  "full": dict(
    image_size=128, pool=2206, num_meta=300, num_test=400, batch=16, steps=6000,
    backbone=(32, 64, 128, 256, 320),
  ),
  "default": dict(
    image_size=64, pool=420, num_meta=60, num_test=120, batch=8, steps=1500,
    backbone=(16, 32, 64, 128),
  ),
  "small": dict(
    image_size=32, pool=280, num_meta=40, num_test=80, batch=8, steps=600, backbone=(8, 16, 32)
  ),
  "smoke": dict(image_size=32, pool=24, num_meta=8, num_test=8, batch=8, steps=6, backbone=(8, 16)),
}  # fmt: skip


def size_name(flags: set[str]) -> str:
  """`"smoke"`, `"small"` or `"full"` when that option is given, else `"default"`."""
  given = [s for s in ("smoke", "small", "full") if s in flags]
  if len(given) > 1:
    raise ValueError(f"Give at most one of the options smoke, small and full; got {given}.")
  return given[0] if given else "default"


def run_steps(size: str, steps_option: str) -> int:
  """Training steps: the size's default, or the `steps=N` option (N ≥ 1) when it is given.

  Everything derived from the run length (cosine decay, PINT's ramp-ups) follows this number.
  """
  if not steps_option:
    return SIZES[size]["steps"]
  try:
    steps = int(steps_option)
  except ValueError:
    steps = 0
  if steps < 1:
    raise ValueError(f"steps must be a positive integer, got {steps_option!r}.")
  return steps


def target_classes(target: str) -> tuple[str, ...]:
  """The class names (background first) of the segmentation `target` (a key of `TARGETS`)."""
  if target not in TARGETS:
    raise ValueError(f"Unknown target {target!r}; expected one of {tuple(TARGETS)}.")
  return tuple(TARGETS[target][1])


def unet_model(size: str, target: str = "all") -> ml_collections.ConfigDict:
  """`config.model`: the segmentation U-Net every noisy-label method trains, sized by `size`.

  `dropout_rate` > 0 also perturbs PINT's teacher passes (UA-MT's V-Net has dropout).
  """
  return ml_collections.ConfigDict(
    {
      "name": "unet",
      "num_classes": len(target_classes(target)),
      "features": SIZES[size]["backbone"],
      "dropout_rate": 0.0,
      "dtype": "float32",
    }
  )


EVAL_SPLITS = ("test", "val")


def noisy_label_data(
  *,
  size: str,
  noise: str,
  ratio: float,
  meta_stream: bool,
  eval_split: str = "test",
  target: str = "all",
):
  """`config.data` for a noisy-label run.

  Args:
    size: a key of `SIZES`.
    noise: a key of `NOISES` (elastic = warp + rotation + translation, then a dilation: the
      paper's "ElasticDeform").
    ratio: r, the fraction of corrupted training masks.
    meta_stream: pair every training example with a clean meta example (`data.streams.meta`).
    eval_split: "test", or "val" (disjoint phantom cases of the same size) for model selection.
    target: a key of `TARGETS`: all phantom classes, or one structure as a binary task.
  """
  if noise not in NOISES:
    raise ValueError(f"Unknown noise {noise!r}; expected one of {tuple(NOISES)}.")
  if eval_split not in EVAL_SPLITS:
    raise ValueError(f"Unknown eval_split {eval_split!r}; expected one of {EVAL_SPLITS}.")
  class_names = target_classes(target)
  mapping = TARGETS[target][0]
  s = SIZES[size]
  image_size = s["image_size"]
  phantom = {"name": "phantom_abdomen", "image_size": image_size, "spatial_dims": 2, "seed": 0}

  def relabelled(source: dict) -> dict:
    return source if mapping is None else {"name": "relabel", "base": source, "mapping": mapping}

  noisy = {
    "name": "noisy_labels",
    "base": relabelled({**phantom, "split": "train", "num_cases": s["pool"]}),
    "noise_ratio": ratio,
    "num_meta": s["num_meta"],
    "seed": 0,
    "corruptions": NOISES[noise],
    "iterations": (1, 3) if size == "smoke" else (2, 4),
    "structure": "cross",
    "classes": None,
    "elastic_alpha": image_size / 16.0,
    "elastic_sigma": image_size / 16.0,
    "max_rotation": 10.0,
    "max_translation": image_size / 32.0,
    # Diagnostics only ("are wrong labels down-weighted?"); never trained on.
    "keep_clean_label": True,
  }
  data = ml_collections.ConfigDict(
    {
      "train_source": {**noisy, "role": "train"},
      # The evaluation labels are clean; no OOD subtypes (their pixels would be labelled 0).
      "eval_source": relabelled(
        {**phantom, "split": eval_split, "num_cases": s["num_test"], "ood_fraction": 0.0}
      ),
      "batch_size": s["batch"],
      "seed": 0,
      "spatial_dims": 2,
      "num_classes": len(class_names),
      "class_names": class_names,
      "require_label": True,
      "train_transforms": ("ct_window",),
      "eval_transforms": ("ct_window",),
      "window_level": 40.0,
      "window_width": 400.0,
      "worker_count": 0,
      "read_threads": 2,
    }
  )
  if meta_stream:
    # The clean meta set: the other role of the same pool (disjoint from the training set),
    # one meta example per training example.
    data.streams = ml_collections.ConfigDict(
      {"meta": common.stream({**noisy, "role": "meta"}, s["batch"], ("ct_window",))}
    )
  return data
