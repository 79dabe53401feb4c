"""Chest-radiograph phantoms with controlled dataset shift (MedShift's internal / external sites).

MedShift (thesis Ch. 5, spec thesis_ch5_6 §2) compares a clean internal dataset with an external
one of the same classes whose images are partly "shifted". Real shift has no ground truth; here
every shifted case is injected on purpose and flagged, so tests can check that detectors rank
the injected cases first and that OTDD falls as they are removed.

Each case starts as case i of `ChestRadiographPhantomSource(split, seed)` (same classes and
anatomy) and gets one shift type, drawn from its own random stream with `shift_fractions`:

* `none` — unchanged;
* `intensity` — another acquisition's exposure curve: a strong gamma (0.3–0.5 or 2–3) and a
  contrast/offset change;
* `noise` — heavy detector noise: Gaussian, σ 0.07–0.14 (the phantom's own is 0.008–0.03);
* `artefact` — one of: burned-in markers (bright rectangles near a corner), periodic grid-line
  stripes, or a dark collimation band along one or two edges;
* `foreign` — another modality (`ModalityPhantomSource`: CT, brain MR, ultrasound, dermoscopy)
  carrying the radiograph's class label (a mis-filed image);
* `label_noise` — the image is unchanged but its label is another class (a wrong annotation).

`severity` scales the intensity, noise and artefact strengths (1 = the ranges above). With all
fractions 0 the source is a clean (internal) dataset.

`content="modalities"` swaps the classes for visually distinct ones — a (normal) chest
radiograph, CT, brain MR, ultrasound, dermoscopy (`MODALITY_CLASS_NAMES`, uniform by default) —
a single-label set whose classes are as easy to tell apart as MURA's body parts, so retrieval
(OSCARS, thesis ch. 6 §3) is about the intra-class outliers the shifts make. Foreign images
need the chest content (every modality is already a class). Everything is deterministic per
(seed, split, index); the shift type and the observed label are known without rendering.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlsup_jax.data.phantoms.modalities import MODALITY_NAMES, ModalityPhantomSource
from mlsup_jax.data.phantoms.radiograph import (
  CLASS_NAMES,
  DEFAULT_CLASS_WEIGHTS,
  ChestRadiographPhantomSource,
)
from mlsup_jax.data.phantoms.source_base import PhantomSource, case_rng, class_stream, split_id
from mlsup_jax.data.phantoms.textures import gaussian_blur

MODALITY_CLASS_NAMES = ("radiograph", *MODALITY_NAMES)
CONTENTS = ("chest", "modalities")
SHIFT_TYPES = ("none", "intensity", "noise", "artefact", "foreign", "label_noise")
# Memory for cached cases (float32 image: 4 bytes a pixel).
CACHE_BYTES = 128 * 2**20
# Stream tags (4-word seeds never coincide with the 3-word `case_rng` streams).
_SHIFT_STREAM, _LABEL_STREAM, _PARAM_STREAM = 0x53484946, 0x4C41424C, 0x50415241


def shift_stream(
  seed: int, split: str, num_cases: int, shift_fractions: Sequence[float]
) -> np.ndarray:
  """The `SHIFT_TYPES` index of cases `0 … num_cases − 1` (0 = none), without rendering.

  Args:
    shift_fractions: the share of each shift type after `none` (5 values, sum ≤ 1).

  Returns:
    `[num_cases]` int32.
  """
  uniforms = np.random.default_rng([int(seed), split_id(split), _SHIFT_STREAM, 1]).random(
    int(num_cases)
  )
  edges = np.cumsum(np.asarray(shift_fractions, np.float64))
  # Shift types occupy [0, Σ fractions); the rest of [0, 1) is "none".
  types = np.searchsorted(edges, uniforms, side="right") + 1
  return np.where(uniforms < edges[-1], types, 0).astype(np.int32)


class ShiftedRadiographSource(PhantomSource):
  """Chest-radiograph phantom cases, a controlled fraction of them shifted (module docstring).

  Example: `image: [S, S, 1]` float32 in [0, 1]; `class_id: []` int32, the observed label (the
  wrong one under `label_noise`); `true_class_id: []` int32, the case's real class (foreign
  images keep the class they were filed under); `shifted: []` int32 (1 = any shift);
  `shift_type: []` int32, an index into `SHIFT_TYPES`.

  Args:
    split: "train", "val" or "test"; each split draws disjoint cases.
    num_cases: number of cases.
    seed: non-negative base seed (internal and external sites: different seeds).
    image_size: S, ≥ 32.
    class_weights: relative class frequencies (of `CLASS_NAMES`, or of `MODALITY_CLASS_NAMES`
      with the modalities content); None: the content's default.
    shift_fractions: shares of (intensity, noise, artefact, foreign, label_noise); each ≥ 0,
      summing to ≤ 1. All zero: a clean dataset.
    severity: scales the intensity, noise and artefact strengths (> 0).
    foreign_modalities: the modalities foreign images cycle through.
    content: "chest" (the chest phantom's finding classes) or "modalities" (module docstring).
    cache_size: maximum number of cached cases; None: as many as fit in 128 MiB.

  Attributes:
    class_ids: `[num_cases]` int32, observed labels. true_class_ids: the real classes.
    shift_types: `[num_cases]` int32. shifted: `[num_cases]` bool.
    class_names: `CLASS_NAMES` (or `MODALITY_CLASS_NAMES`). shift_names: `SHIFT_TYPES`.

  Raises:
    ValueError: on invalid fractions, severity, modalities, or the base phantom's arguments;
      label noise with fewer than two classes of non-zero weight.
  """

  CLASS_NAMES = CLASS_NAMES

  def __init__(
    self,
    split: str = "train",
    num_cases: int = 64,
    seed: int = 0,
    image_size: int = 64,
    class_weights: Sequence[float] | None = None,
    shift_fractions: Sequence[float] = (0.0, 0.0, 0.0, 0.0, 0.0),
    severity: float = 1.0,
    foreign_modalities: Sequence[str] = MODALITY_NAMES,
    content: str = "chest",
    cache_size: int | None = None,
  ):
    fractions = np.asarray(shift_fractions, np.float64)
    if fractions.shape != (len(SHIFT_TYPES) - 1,):
      raise ValueError(
        f"shift_fractions needs {len(SHIFT_TYPES) - 1} entries ({', '.join(SHIFT_TYPES[1:])}), "
        f"got {list(shift_fractions)}."
      )
    if not np.all(np.isfinite(fractions)) or np.any(fractions < 0) or fractions.sum() > 1 + 1e-9:
      raise ValueError(f"shift_fractions must be ≥ 0 and sum to ≤ 1, got {list(shift_fractions)}.")
    if not float(severity) > 0:
      raise ValueError(f"severity must be > 0, got {severity}.")
    if content not in CONTENTS:
      raise ValueError(f"content must be one of {CONTENTS}, got {content!r}.")
    if content == "modalities" and fractions[SHIFT_TYPES.index("foreign") - 1] > 0:
      raise ValueError("foreign images need content='chest' (every modality is a class here).")
    if cache_size is None:
      cache_size = max(1, min(int(num_cases), CACHE_BYTES // (4 * int(image_size) ** 2)))
    super().__init__(split, num_cases, seed, cache_size=cache_size)
    # The wrapped sources do not cache: this source caches the finished case.
    self.content = content
    self.modalities = None
    if content == "chest":
      weights = DEFAULT_CLASS_WEIGHTS if class_weights is None else class_weights
      self.base = ChestRadiographPhantomSource(
        split, num_cases, seed, image_size, weights, cache_size=0
      )
      self.class_weights = self.base.class_weights
      self.class_names = CLASS_NAMES
      self.true_class_ids = self.base.class_ids
    else:
      names = MODALITY_CLASS_NAMES
      weights = (1.0,) * len(names) if class_weights is None else tuple(class_weights)
      if len(weights) != len(names) or min(weights) < 0 or not sum(weights) > 0:
        raise ValueError(f"class_weights needs {len(names)} entries ≥ 0 ({names}), got {weights}.")
      self.base = ChestRadiographPhantomSource(
        split, num_cases, seed, image_size, (1.0, 0.0, 0.0, 0.0, 0.0), cache_size=0
      )
      self.modalities = ModalityPhantomSource(
        split, num_cases, seed, MODALITY_NAMES, image_size, cache_size=0
      )
      self.class_weights = tuple(float(w) for w in weights)
      self.class_names = names
      self.true_class_ids = class_stream(seed, split, num_cases, weights)
    self.image_size = self.base.image_size
    self.shift_fractions = tuple(float(f) for f in fractions)
    self.severity = float(severity)
    self.shift_names = SHIFT_TYPES
    self.shift_types = shift_stream(self.seed, split, self.num_cases, self.shift_fractions)
    self.shifted = self.shift_types > 0
    self.class_ids = self._observed_labels()
    for array in (self.shift_types, self.shifted, self.class_ids):
      array.flags.writeable = False
    self.foreign = None
    if fractions[SHIFT_TYPES.index("foreign") - 1] > 0:
      self.foreign = ModalityPhantomSource(
        split, num_cases, seed, tuple(foreign_modalities), image_size, cache_size=0
      )

  def _observed_labels(self) -> np.ndarray:
    """The true classes, with each `label_noise` case moved to another class of non-zero weight."""
    labels = np.array(self.true_class_ids, np.int32)
    noisy = np.flatnonzero(self.shift_types == SHIFT_TYPES.index("label_noise"))
    if not len(noisy):
      return labels
    present = np.flatnonzero(np.asarray(self.class_weights) > 0)
    if len(present) < 2:
      raise ValueError("label_noise needs at least two classes with non-zero class_weights.")
    rng = np.random.default_rng([self.seed, split_id(self.split), _LABEL_STREAM, 1])
    for index in noisy:
      others = present[present != labels[index]]
      labels[index] = others[rng.integers(len(others))]
    return labels

  def generate(self, rng: np.random.Generator, index: int) -> dict[str, np.ndarray]:
    """Case `index` (see the class docstring for the keys)."""
    del rng  # The base case uses `case_rng`; shift parameters get their own stream.
    shift = SHIFT_TYPES[int(self.shift_types[index])]
    params = np.random.default_rng([self.seed, split_id(self.split), index, _PARAM_STREAM])
    if shift == "foreign":
      image = self.foreign.case(index)["image"][..., 0]
    elif self.content == "modalities" and self.true_class_ids[index] > 0:
      name = MODALITY_CLASS_NAMES[int(self.true_class_ids[index])]
      render = getattr(self.modalities, f"_render_{name}")
      image = np.clip(render(case_rng(self.seed, self.split, index), index), 0.0, 1.0)
    else:
      image = self.base.case(index)["image"][..., 0]
    if shift == "intensity":
      image = self._intensity(params, image)
    elif shift == "noise":
      image = self._noise(params, image)
    elif shift == "artefact":
      image = self._artefact(params, image)
    return {
      "image": np.clip(image, 0.0, 1.0).astype(np.float32)[..., None],
      "class_id": np.asarray(self.class_ids[index], np.int32),
      "true_class_id": np.asarray(self.true_class_ids[index], np.int32),
      "shifted": np.asarray(int(self.shifted[index]), np.int32),
      "shift_type": np.asarray(self.shift_types[index], np.int32),
    }

  def _intensity(self, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Another exposure curve: strong gamma, then contrast and offset."""
    s = self.severity
    low_gamma = rng.uniform() < 0.5
    gamma = rng.uniform(0.3, 0.5) if low_gamma else rng.uniform(2.0, 3.0)
    gamma = float(np.exp(s * np.log(gamma)))
    contrast = 1.0 + s * rng.uniform(-0.35, -0.15)
    offset = s * rng.uniform(0.05, 0.2) * (1.0 if low_gamma else -0.5)
    return contrast * np.power(image, gamma) + offset + (1.0 - contrast) / 2.0

  def _noise(self, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Heavy, slightly correlated detector noise."""
    noise = gaussian_blur(rng.standard_normal(image.shape).astype(np.float32), 0.4)
    noise /= max(float(noise.std()), 1e-6)
    return image + self.severity * rng.uniform(0.07, 0.14) * noise

  def _artefact(self, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Burned-in markers, grid-line stripes or a collimation band (one, at random)."""
    size, s = self.image_size, self.severity
    image = image.copy()
    kind = int(rng.integers(3))
    if kind == 0:  # Burned-in markers (text labels, lead letters) near one corner.
      top = rng.uniform() < 0.5
      left = rng.uniform() < 0.5
      for _ in range(int(rng.integers(2, 5))):
        h, w = rng.integers(size // 16 + 1, size // 8 + 2), rng.integers(size // 8, size // 4)
        r0 = int(rng.integers(1, size // 4)) if top else size - int(rng.integers(h + 1, size // 3))
        c0 = int(rng.integers(1, size // 3)) if left else size - int(rng.integers(w + 1, size // 2))
        image[r0 : r0 + h, c0 : c0 + w] = rng.uniform(0.9, 1.0)
    elif kind == 1:  # Anti-scatter grid lines: periodic horizontal stripes.
      period = rng.uniform(2.5, 5.0) * size / 64.0
      rows = np.arange(size, dtype=np.float32)[:, None]
      stripes = np.cos(2.0 * np.pi * rows / period + rng.uniform(0, 2 * np.pi))
      image = image + s * rng.uniform(0.12, 0.22) * stripes
    else:  # Collimation: dark bands along one or two edges.
      for edge in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
        width = int(round(s * rng.uniform(0.12, 0.22) * size))
        view = np.rot90(image, k=int(edge))  # A view: writes land in `image`.
        view[:width] = rng.uniform(0.0, 0.05)
    return image
