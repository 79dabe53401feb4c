"""Chest radiographs with a spurious marker: a medical Waterbirds (CFR, seed 003 §5a).

Waterbirds pairs a label (land/water bird) with a background that agrees with it in 95 % of the
training images and in half of the validation and test images. Here the label is a **finding** on
the chest-radiograph phantom (`radiograph.py`; effusion by default: is there one or not) and the
spurious attribute is a **burned-in marker** — a bright lead letter / text block near a top
corner, as hospitals and portable units stamp on their images. The marker is far easier to see
than the finding, so a classifier that can use it will.

Every case belongs to one of four groups, `group = 2·finding + marker`:

| group | finding | marker | Waterbirds analogue        |
|-------|---------|--------|----------------------------|
| 0     | no      | no     | landbird on land           |
| 1     | no      | yes    | landbird on water (rare)   |
| 2     | yes     | no     | waterbird on land (rare)   |
| 3     | yes     | yes    | waterbird on water         |

`group_weights` sets the group frequencies: `TRAIN_GROUP_WEIGHTS` (marker agrees with the
finding in 95 % of the cases, classes balanced) for training, `BALANCED_GROUP_WEIGHTS` for
validation and test. The group of case i comes from its own stream, so it is known without
rendering; the radiograph itself is case i of `ChestRadiographPhantomSource(split, seed)` rendered
as the finding's class or as normal, and the marker is drawn from a third stream — so the marker
never tells anything about the anatomy.

Keys of a case: `image: [S, S, 1]` float32 in [0, 1]; `class_id: []` int32 — the finding (0/1),
or the group (0–3) with `label="group"` (used to pre-train an encoder that knows both concepts,
the role ImageNet / CLIP pre-training plays for Waterbirds); `finding`, `marker`, `group: []`
int32 (for reporting: methods without group labels never read them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlsup_jax.data.phantoms.radiograph import CLASS_NAMES as RADIOGRAPH_CLASSES
from mlsup_jax.data.phantoms.radiograph import ChestRadiographPhantomSource
from mlsup_jax.data.phantoms.source_base import PhantomSource, class_stream, split_id

__all__ = [
  "BALANCED_GROUP_WEIGHTS",
  "GROUP_NAMES",
  "TRAIN_GROUP_WEIGHTS",
  "SpuriousRadiographSource",
  "group_of",
]

GROUP_NAMES = (
  "no finding, no marker",
  "no finding, marker",
  "finding, no marker",
  "finding, marker",
)
# Marker agrees with the finding in 95 % of training cases (Waterbirds: 95 %); classes balanced.
TRAIN_GROUP_WEIGHTS = (0.475, 0.025, 0.025, 0.475)
BALANCED_GROUP_WEIGHTS = (0.25, 0.25, 0.25, 0.25)
LABELS = ("finding", "group")
# Stream tags: 4-word seeds never coincide with the 3-word `case_rng` streams.
_MARKER_STREAM = 0x4D41524B
# Memory for cached cases (float32 image: 4 bytes a pixel).
CACHE_BYTES = 128 * 2**20


def group_of(finding, marker):
  """`2·finding + marker` (works on ints and arrays)."""
  return 2 * finding + marker


class SpuriousRadiographSource(PhantomSource):
  """Chest-radiograph phantom cases with a finding and a spurious marker (module docstring).

  Example:
    >>> from mlsup_jax.data.phantoms.spurious_radiograph import SpuriousRadiographSource
    >>> source = SpuriousRadiographSource("train", num_cases=8, image_size=32)
    >>> case = source[0]
    >>> case["image"].shape, int(case["group"]) == 2 * int(case["finding"]) + int(case["marker"])
    ((32, 32, 1), True)

  Args:
    split: "train", "val" or "test"; each split draws disjoint cases.
    num_cases: number of cases.
    seed: non-negative base seed.
    image_size: S, ≥ 32.
    group_weights: relative frequencies of the four groups (`GROUP_NAMES`); normalised.
    finding: which radiograph finding (`radiograph.CLASS_NAMES`, not "normal") is the label.
    label: "finding" (class_id ∈ {0, 1}) or "group" (class_id ∈ {0, …, 3}).
    marker_contrast: brightness of the marker above the local image, in (0, 1].
    cache_size: maximum number of cached cases; None: as many as fit in 128 MiB.

  Attributes:
    groups, findings, markers, class_ids: `[num_cases]` int32, known without rendering.
    class_names: the names of `class_id`'s values.

  Raises:
    ValueError: on bad weights, an unknown finding or label, a contrast outside (0, 1], or the
      base phantom's arguments.
  """

  def __init__(
    self,
    split: str = "train",
    num_cases: int = 64,
    seed: int = 0,
    image_size: int = 64,
    group_weights: Sequence[float] = TRAIN_GROUP_WEIGHTS,
    finding: str = "effusion",
    label: str = "finding",
    marker_contrast: float = 0.6,
    cache_size: int | None = None,
  ):
    if finding not in RADIOGRAPH_CLASSES[1:]:
      raise ValueError(f"finding must be one of {RADIOGRAPH_CLASSES[1:]}, got {finding!r}.")
    if label not in LABELS:
      raise ValueError(f"label must be one of {LABELS}, got {label!r}.")
    if not 0 < float(marker_contrast) <= 1:
      raise ValueError(f"marker_contrast must be in (0, 1], got {marker_contrast}.")
    weights = np.asarray(group_weights, np.float64)
    if weights.shape != (4,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
      raise ValueError(f"group_weights needs 4 finite entries ≥ 0, got {list(group_weights)}.")
    if weights.sum() <= 0:
      raise ValueError(f"group_weights must not all be zero, got {list(group_weights)}.")
    if cache_size is None:
      cache_size = max(1, min(int(num_cases), CACHE_BYTES // (4 * int(image_size) ** 2)))
    super().__init__(split, num_cases, seed, cache_size=cache_size)
    # The base only renders (its own class stream is unused): cases come from `case_rng`.
    self.base = ChestRadiographPhantomSource(split, 1, seed, image_size, cache_size=0)
    self.image_size = self.base.image_size
    self.finding_class = RADIOGRAPH_CLASSES.index(finding)
    self.label = label
    self.marker_contrast = float(marker_contrast)
    self.group_weights = tuple(float(w) for w in weights / weights.sum())
    self.groups = class_stream(self.seed, split, self.num_cases, self.group_weights)
    self.findings = (self.groups // 2).astype(np.int32)
    self.markers = (self.groups % 2).astype(np.int32)
    self.class_ids = self.findings if label == "finding" else self.groups
    self.class_names = ("no finding", finding) if label == "finding" else GROUP_NAMES
    for array in (self.groups, self.findings, self.markers):
      array.flags.writeable = False

  def generate(self, rng: np.random.Generator, index: int) -> dict[str, np.ndarray]:
    """Case `index` (keys in the module docstring)."""
    finding, marker = int(self.findings[index]), int(self.markers[index])
    image = self.base.render(rng, self.finding_class if finding else 0)
    if marker:
      params = np.random.default_rng([self.seed, split_id(self.split), index, _MARKER_STREAM])
      image = self._marker(params, image)
    return {
      "image": np.clip(image, 0.0, 1.0).astype(np.float32)[..., None],
      "class_id": np.asarray(self.class_ids[index], np.int32),
      "finding": np.asarray(finding, np.int32),
      "marker": np.asarray(marker, np.int32),
      "group": np.asarray(self.groups[index], np.int32),
    }

  def _marker(self, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A bright lead letter ("L"-shaped strokes) or a text block near one of the top corners."""
    size = self.image_size
    image = image.copy()
    unit = max(2, size // 16)
    left = rng.uniform() < 0.5
    r0 = int(rng.integers(unit // 2, 2 * unit))
    c0 = int(rng.integers(unit // 2, 2 * unit))
    if not left:
      c0 = size - c0 - 3 * unit
    region = image[r0 : r0 + 3 * unit, c0 : c0 + 3 * unit]
    stamp = np.zeros_like(region, dtype=bool)
    stroke = max(1, unit // 2)
    if rng.uniform() < 0.5:  # Lead letter "L".
      stamp[:, :stroke] = True
      stamp[-stroke:, :] = True
    else:  # Two lines of text.
      stamp[:unit, :] = True
      stamp[2 * unit - stroke // 2 : 2 * unit + stroke, : 2 * unit] = True
    brightness = min(1.0, float(region.mean()) + self.marker_contrast * rng.uniform(0.8, 1.0))
    region[stamp] = brightness
    return image
