"""Synthetic label noise for segmentation: dilation, erosion, elastic warps (MCPM, seeds §2).

MCPM's experiments corrupt the masks of a fraction r of the training samples by morphological
dilation or by an elastic deformation with rotation and translation, and keep a small clean meta
set apart. `NoisyLabelSource` (dataset name `noisy_labels`) does this for any labelled
segmentation source, the phantoms included:

* the base source's examples are shuffled once (seeded) and split into a clean **meta** set of
  `num_meta` examples and a **train** set of the rest; the two roles are disjoint and together
  hold every example. The meta role returns the base's examples untouched;
* in the train role exactly `round(r · N_train)` examples (halves round up) are corrupted, chosen
  by a seeded permutation; the others are untouched;
* the corruption of an example is drawn from its own generator, seeded by `seed` and the
  example's index in the base source, so an example always gets the same noisy mask — label
  noise is a fixed property of the data set, not an augmentation. Only `label` changes; the image
  and every other key stay as the base gives them.

Multi-class masks (integer labels, 0 = background) are corrupted class by class without ever
giving a pixel two labels. The rule is "painter's order": a label map is read as painted in
increasing class index, each class on top of the lower ones — the way nested anatomy is labelled
(the liver, class 1, then a tumour, class 2, inside it). So class c's painted region is
`label ≥ c` (the liver's includes its tumour), and

* dilation grows class c, in increasing c, over every pixel with a lower label (background and
  lower classes), never over a higher one: the tumour grows into the liver, the liver into the
  background around it;
* erosion shrinks class c's painted region `label ≥ c`; the class-c pixels it removes take the
  label of the nearest pixel (Euclidean) with a lower label, i.e. what was painted underneath:
  an eroded tumour's rim becomes liver, an eroded liver's rim becomes background, and the liver
  does not shrink around its own tumour. Every painted region `label ≥ c` can only shrink. The
  image border counts as inside (a mask touching the border is not eroded from it); a class with
  no lower label in the image is left as it is;
* an elastic warp moves the whole label map at once with nearest-neighbour sampling, so no
  label value is created and no pixel holds two labels.

An example whose mask has no foreground stays unchanged by dilation and erosion even when it is
among the corrupted ones (there is no boundary to mis-draw); it still counts towards the
fraction.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from mlsup_jax.data.sources import as_source

CORRUPTIONS = ("dilation", "erosion", "elastic")
STRUCTURES = ("cross", "box")
ROLES = ("train", "meta")
# Independent random streams: the meta/train split, the choice of corrupted examples, and the
# per-example corruption.
_SPLIT_STREAM, _CHOICE_STREAM, _CORRUPT_STREAM = 1, 2, 3


def structuring_element(kind: str, ndim: int) -> np.ndarray:
  """`"cross"`: face neighbours only (4-conn. in 2-D, 6 in 3-D); `"box"`: all (8 / 26)."""
  if kind not in STRUCTURES:
    raise ValueError(f"Unknown structure {kind!r}; expected one of {', '.join(STRUCTURES)}.")
  return ndimage.generate_binary_structure(ndim, 1 if kind == "cross" else ndim)


def _foreground_classes(label: np.ndarray, classes: Sequence[int] | None) -> list[int]:
  present = [int(c) for c in np.unique(label) if c > 0]
  return present if classes is None else [c for c in present if c in set(classes)]


def dilate_labels(
  label: np.ndarray, iterations: int, structure: np.ndarray, classes: Sequence[int] | None = None
) -> np.ndarray:
  """Per-class dilation in painter's order (see the module docstring).

  Args:
    label: `[*S]` integer labels, 0 = background.
    iterations: dilation steps (≥ 1).
    structure: the structuring element, of rank `label.ndim`.
    classes: the classes to grow (default: every foreground class present).

  Returns:
    `[*S]` labels of the same dtype; every foreground class covers at least its old pixels
    except where a higher class grew over it.
  """
  out = np.array(label, copy=True)
  for c in _foreground_classes(label, classes):
    grown = ndimage.binary_dilation(out == c, structure, iterations=iterations)
    out[grown & (out < c)] = c
  return out


def erode_labels(
  label: np.ndarray, iterations: int, structure: np.ndarray, classes: Sequence[int] | None = None
) -> np.ndarray:
  """Per-class erosion in painter's order; removed pixels show the label underneath.

  Args:
    label: `[*S]` integer labels, 0 = background.
    iterations: erosion steps (≥ 1).
    structure: the structuring element, of rank `label.ndim`.
    classes: the classes to shrink (default: every foreground class present).

  Returns:
    `[*S]` labels of the same dtype; for every class c, `out ≥ c` is a subset of `label ≥ c`.
  """
  out = np.array(label, copy=True)
  for c in _foreground_classes(label, classes):
    # border_value=1: the annotator's boundary lies inside the image, not at its edge.
    core = ndimage.binary_erosion(label >= c, structure, iterations=iterations, border_value=1)
    rim = (label == c) & ~core
    below = label < c
    if not rim.any() or not below.any():
      continue
    # Rims of different classes are disjoint and read donors from `label`: order-free.
    nearest = ndimage.distance_transform_edt(~below, return_distances=False, return_indices=True)
    out[rim] = label[tuple(axis[rim] for axis in nearest)]
  return out


def elastic_labels(
  label: np.ndarray,
  rng: np.random.Generator,
  *,
  alpha: float,
  sigma: float,
  max_rotation: float,
  max_translation: float,
) -> np.ndarray:
  """Warps a label map by a smooth random field plus a random rotation and translation.

  The displacement of every axis is uniform noise in [−1, 1] smoothed by a Gaussian of `sigma`
  pixels (Simard et al. 2003), rescaled so that its largest magnitude is `alpha` pixels. The
  rotation (uniform in ±`max_rotation` degrees, about the centre, in the plane of the last two
  axes) and the translation (uniform in ±`max_translation` pixels along the last two axes) are
  composed with it into one map; labels are sampled nearest-neighbour, and positions outside the
  image take the nearest border label.

  Args:
    label: `[*S]` integer labels (2-D `[H, W]` or 3-D `[D, H, W]`).
    rng: the example's generator.
    alpha: largest elastic displacement in pixels (0: none).
    sigma: smoothness of the field in pixels (> 0).
    max_rotation: in degrees.
    max_translation: in pixels.

  Returns:
    `[*S]` labels of the same dtype; every value is one of `label`'s values.
  """
  shape = label.shape
  grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
  coords = [g.copy() for g in grid]
  if alpha > 0:
    for axis in range(len(shape)):
      field = ndimage.gaussian_filter(rng.uniform(-1.0, 1.0, shape), sigma, mode="reflect")
      coords[axis] += alpha * field / max(float(np.abs(field).max()), 1e-12)
  angle = math.radians(rng.uniform(-max_rotation, max_rotation))
  shift = rng.uniform(-max_translation, max_translation, size=2)
  # The inverse map: output pixel p reads the source at R(p − centre) + centre − shift.
  row, col = len(shape) - 2, len(shape) - 1
  centre = ((shape[row] - 1) / 2.0, (shape[col] - 1) / 2.0)
  r, c = coords[row] - centre[0], coords[col] - centre[1]
  cos, sin = math.cos(angle), math.sin(angle)
  coords[row] = cos * r - sin * c + centre[0] - shift[0]
  coords[col] = sin * r + cos * c + centre[1] - shift[1]
  return ndimage.map_coordinates(label, np.stack(coords), order=0, mode="nearest").astype(
    label.dtype
  )


@dataclasses.dataclass(frozen=True)
class LabelCorruption:
  """A chain of corruptions applied to one label map, drawn from the example's generator.

  Attributes:
    corruptions: names from `CORRUPTIONS`, applied in order (e.g. `("elastic", "dilation")`,
      the paper's elastic deformation "with rotation, translation and dilation").
    iterations: `(low, high)`: dilation / erosion steps drawn uniformly in `[low, high]` per
      example (`low = high` fixes them); `low ≥ 1`.
    structure: structuring element of dilation / erosion, `"cross"` or `"box"`.
    classes: the foreground classes dilated / eroded (None: all).
    elastic_alpha, elastic_sigma, max_rotation, max_translation: see `elastic_labels`.
  """

  corruptions: tuple[str, ...] = ("dilation",)
  iterations: tuple[int, int] = (1, 3)
  structure: str = "cross"
  classes: tuple[int, ...] | None = None
  elastic_alpha: float = 4.0
  elastic_sigma: float = 4.0
  max_rotation: float = 10.0
  max_translation: float = 3.0

  def __post_init__(self):
    if isinstance(self.corruptions, str) or not self.corruptions:
      raise ValueError(
        f"corruptions must be a non-empty sequence of names from {CORRUPTIONS}, got "
        f"{self.corruptions!r}."
      )
    unknown = [c for c in self.corruptions if c not in CORRUPTIONS]
    if unknown:
      raise ValueError(f"Unknown corruptions {unknown}; expected names from {CORRUPTIONS}.")
    low, high = (int(v) for v in self.iterations)
    if not 1 <= low <= high:
      raise ValueError(
        f"iterations must be (low, high) with 1 ≤ low ≤ high, got {self.iterations}."
      )
    structuring_element(self.structure, 2)  # Checks the name.
    if self.classes is not None and any(int(c) < 1 for c in self.classes):
      raise ValueError(f"classes must be foreground classes (≥ 1), got {self.classes}.")
    if self.elastic_alpha < 0 or self.max_rotation < 0 or self.max_translation < 0:
      raise ValueError("elastic_alpha, max_rotation and max_translation must be ≥ 0.")
    if not self.elastic_sigma > 0:
      raise ValueError(f"elastic_sigma must be positive, got {self.elastic_sigma}.")

  def __call__(self, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`label: [*S]` integer → the corrupted `[*S]` label map (same dtype)."""
    label = np.asarray(label)
    structure = structuring_element(self.structure, label.ndim)
    low, high = (int(v) for v in self.iterations)
    for name in self.corruptions:
      if name == "elastic":
        label = elastic_labels(
          label,
          rng,
          alpha=self.elastic_alpha,
          sigma=self.elastic_sigma,
          max_rotation=self.max_rotation,
          max_translation=self.max_translation,
        )
      else:
        steps = int(rng.integers(low, high + 1))
        morph = dilate_labels if name == "dilation" else erode_labels
        label = morph(label, steps, structure, self.classes)
    return label


class NoisyLabelSource:
  """The train (noisy) or meta (clean) role of a labelled segmentation source.

  Example: the base's example; in the train role its `label` is corrupted when the example is
  among the chosen ones. Every example gains `label_corrupted: []` int32 (1 = its label was
  corrupted), and with `keep_clean_label` also `clean_label: [*S]` (the base's label) — for
  diagnostics only (e.g. the meta weights on corrupted pixels); a method must not train on it.

  Args:
    base: a labelled source (`label: [*S]` integer per example) or its dataset config (a dict /
      ConfigDict with `name` and the factory's fields).
    role: "train" (the noisy training set) or "meta" (the clean meta set).
    noise_ratio: r ∈ [0, 1], the fraction of training examples whose label is corrupted.
    num_meta: size of the clean meta set, taken from the base before the training set.
    seed: seeds the split, the choice of corrupted examples and every corruption.
    corruptions, iterations, structure, classes, elastic_alpha, elastic_sigma, max_rotation,
      max_translation: the corruption (see `LabelCorruption`).
    keep_clean_label: also return the uncorrupted label as `clean_label`.

  Attributes:
    indices: `[N]` int64, the base index of every example of this role.
    corrupted: `[N]` bool, whether example i's label is corrupted (all False for "meta").
    case_ids: per-example names, when the base has `case_ids`.

  Raises:
    ValueError: on an unknown role or corruption, r outside [0, 1], `num_meta` outside
      `[0, len(base) − 1]`, an empty meta role, or invalid corruption parameters.
  """

  def __init__(
    self,
    base,
    role: str = "train",
    noise_ratio: float = 0.4,
    num_meta: int = 0,
    seed: int = 0,
    corruptions: Sequence[str] = ("dilation",),
    iterations: Sequence[int] = (1, 3),
    structure: str = "cross",
    classes: Sequence[int] | None = None,
    elastic_alpha: float = 4.0,
    elastic_sigma: float = 4.0,
    max_rotation: float = 10.0,
    max_translation: float = 3.0,
    keep_clean_label: bool = False,
  ):
    if role not in ROLES:
      raise ValueError(f"Unknown role {role!r}; expected one of {', '.join(ROLES)}.")
    if isinstance(noise_ratio, bool) or not 0.0 <= float(noise_ratio) <= 1.0:
      raise ValueError(
        f"noise_ratio r is the fraction of corrupted training examples and must lie in "
        f"[0, 1], got {noise_ratio!r}."
      )
    if int(seed) < 0:
      raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    self.corruption = LabelCorruption(
      corruptions=tuple(corruptions),
      iterations=tuple(int(v) for v in iterations),
      structure=structure,
      classes=None if classes is None else tuple(int(c) for c in classes),
      elastic_alpha=float(elastic_alpha),
      elastic_sigma=float(elastic_sigma),
      max_rotation=float(max_rotation),
      max_translation=float(max_translation),
    )
    self.base = as_source(base)
    self.role, self.noise_ratio, self.seed = role, float(noise_ratio), int(seed)
    self.keep_clean_label = bool(keep_clean_label)
    total = len(self.base)
    if not 0 <= int(num_meta) < total:
      raise ValueError(
        f"num_meta must lie in [0, {total - 1}] so that the training set of the {total} base "
        f"examples is not empty, got {num_meta}."
      )
    self.num_meta = int(num_meta)
    order = np.random.default_rng([self.seed, _SPLIT_STREAM]).permutation(total)
    meta, train = np.sort(order[: self.num_meta]), np.sort(order[self.num_meta :])
    if role == "meta":
      if not self.num_meta:
        raise ValueError("Role 'meta' is empty: set num_meta > 0 to keep a clean meta set.")
      self.indices = meta.astype(np.int64)
      self.corrupted = np.zeros(len(meta), bool)
    else:
      self.indices = train.astype(np.int64)
      count = math.floor(self.noise_ratio * len(train) + 0.5)
      chosen = np.random.default_rng([self.seed, _CHOICE_STREAM]).permutation(len(train))[:count]
      self.corrupted = np.zeros(len(train), bool)
      self.corrupted[chosen] = True
    self.indices.flags.writeable = False
    self.corrupted.flags.writeable = False
    base_case_ids = getattr(self.base, "case_ids", None)
    if base_case_ids is not None:
      self.case_ids = [base_case_ids[i] for i in self.indices]
    names = getattr(self.base, "class_names", None) or getattr(self.base, "CLASS_NAMES", None)
    if names is not None:
      self.class_names = tuple(names)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index) -> dict[str, Any]:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"NoisyLabelSource index {index} out of range [0, {len(self)}).")
    index %= len(self)
    base_index = int(self.indices[index])
    example = dict(self.base[base_index])
    if "label" not in example:
      raise ValueError(
        f"base[{base_index}] has no 'label' (keys: {sorted(example)}); label noise needs "
        "segmentation masks."
      )
    clean = np.asarray(example["label"])
    if not np.issubdtype(clean.dtype, np.integer):
      raise ValueError(f"base[{base_index}]: label dtype {clean.dtype} is not an integer type.")
    if self.corrupted[index]:
      rng = np.random.default_rng([self.seed, _CORRUPT_STREAM, base_index])
      example["label"] = self.corruption(clean, rng)
    example["label_corrupted"] = np.asarray(int(self.corrupted[index]), np.int32)
    if self.keep_clean_label:
      example["clean_label"] = np.array(clean, copy=True)
    return example

  def __repr__(self) -> str:
    return (
      f"NoisyLabelSource(role={self.role!r}, {len(self)} examples, "
      f"{int(self.corrupted.sum())} corrupted by {'+'.join(self.corruption.corruptions)}, "
      f"r={self.noise_ratio})"
    )
