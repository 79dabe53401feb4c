"""Multi-label chest radiographs with CheXpert's 14 findings (PMS / OSCARS retrieval, thesis ch. 6).

Each case gets a **label set** of the 14 `FINDINGS` drawn from the shipped table of real
CheXpert label sets (`finding_statistics.py`), so the findings' frequencies *and* co-occurrences
follow the real data and exact label-set matches are rare (the table has 1,466 distinct sets).
The image is the chest phantom's radiograph (`radiograph.py`: anatomy, exposure, detector) with
every finding of its set painted in:

| finding                    | painted as                                                     |
|----------------------------|----------------------------------------------------------------|
| No Finding                 | nothing (the set holds no other finding)                        |
| Enlarged Cardiomediastinum | a wider upper mediastinum (extra density either side of it)     |
| Cardiomegaly               | a heart 18–35 % wider                                           |
| Lung Opacity               | fractal-edged patchy opacity in one lung                        |
| Lung Lesion                | one to three round nodules                                      |
| Edema                      | bilateral perihilar haze fading outwards ("bat wings")          |
| Consolidation              | a dense, homogeneous lower-zone opacity                         |
| Pneumonia                  | several small patches in one upper / mid zone                   |
| Atelectasis                | plate-like horizontal band(s) above a dome                      |
| Pneumothorax               | extra air at one apex and lateral wall, lung markings gone      |
| Pleural Effusion           | fluid at a base up to a lateral meniscus                        |
| Pleural Other              | a dense rim of pleural thickening along one lateral wall        |
| Fracture                   | a bright callus with a step on one lateral rib                  |
| Support Devices            | a bright tube down the midline and round ECG leads              |

Keys of an example: `image [S, S, 1]` float32 in [0, 1] and `labels [14]` float32 (0 / 1, in the
order of `FINDINGS`). The label sets are known without rendering (`label_sets` attribute), so a
method can compute prevalences (PMS's τ) before training.

Splits: `train`, `val`, `test` draw disjoint cases (as every phantom). The retrieval configs
use `train` for training, `val` for model selection and `test` as the query set + database
(`data/sources/query_database.py`).
"""

from __future__ import annotations

import math

import numpy as np

from mlsup_jax.data.phantoms.curves import projected_tube_profile
from mlsup_jax.data.phantoms.finding_statistics import FINDINGS, TABLE, load_pattern_table
from mlsup_jax.data.phantoms.radiograph import ChestRadiographPhantomSource, expose_radiograph
from mlsup_jax.data.phantoms.source_base import PhantomSource, split_id
from mlsup_jax.data.phantoms.textures import fractal_noise, smoothstep

__all__ = ["FINDINGS", "MultiFindingRadiographSource", "label_set_stream"]

# Tag of the label-set stream (distinct from every `case_rng` stream: 4 seed words).
_LABEL_STREAM = 0x4C41424C


def label_set_stream(seed: int, split: str, num_cases: int, table: str = TABLE) -> np.ndarray:
  """The label sets of cases `0 … num_cases − 1`, drawn without rendering.

  Case i's set depends only on (seed, split, i): the uniforms come from one stream per
  (seed, split), read in order, so a longer source extends a shorter one.

  Returns:
    `[num_cases, 14]` uint8.
  """
  patterns, counts = load_pattern_table(table)
  uniforms = np.random.default_rng([int(seed), split_id(split), _LABEL_STREAM, 1]).random(
    int(num_cases)
  )
  cumulative = np.cumsum(counts / counts.sum())
  choice = np.minimum(np.searchsorted(cumulative, uniforms, side="right"), len(counts) - 1)
  return patterns[choice]


class MultiFindingRadiographSource(PhantomSource):
  """Synthetic frontal chest radiographs with any subset of CheXpert's 14 findings.

  Example:
    >>> from mlsup_jax.data.phantoms.multi_finding_radiograph import (
    ...     FINDINGS, MultiFindingRadiographSource)
    >>> source = MultiFindingRadiographSource("train", num_cases=4, image_size=32)
    >>> example = source[0]
    >>> example["image"].shape, example["labels"].shape, len(FINDINGS)
    ((32, 32, 1), (14,), 14)

  Args:
    split: "train", "val" or "test".
    num_cases: number of cases, ≥ 1.
    seed: non-negative base seed.
    image_size: S, ≥ 32.
    table: the label-set table (default: CheXpert's, shipped).
    cache_size: cached cases; None: as many as fit in 128 MiB.

  Attributes:
    label_sets: `[num_cases, 14]` uint8 (known without rendering).
    class_names: `FINDINGS`.
  """

  class_names = FINDINGS

  def __init__(
    self,
    split: str = "train",
    num_cases: int = 64,
    seed: int = 0,
    image_size: int = 64,
    table: str = TABLE,
    cache_size: int | None = None,
  ):
    if cache_size is None:
      cache_size = max(1, (128 * 2**20) // (4 * int(image_size) ** 2))
    super().__init__(split, num_cases, seed, cache_size)
    # The chest phantom paints the anatomy; its class weights are unused here.
    self._chest = ChestRadiographPhantomSource(split, 1, seed, image_size, cache_size=0)
    self.image_size = int(image_size)
    self.label_sets = label_set_stream(seed, split, self.num_cases, table)

  def generate(self, rng: np.random.Generator, index: int) -> dict[str, np.ndarray]:
    labels = self.label_sets[index]
    return {
      "image": self.render(rng, labels)[..., None],
      "labels": labels.astype(np.float32),
    }

  def render(self, rng: np.random.Generator, labels) -> np.ndarray:
    """`[S, S]` float32 radiograph with the findings of `labels [14]` (0 / 1)."""
    has = {name: bool(v) for name, v in zip(FINDINGS, np.asarray(labels), strict=True)}
    anatomy_rng, finding_rng, acquisition_rng = rng.spawn(3)
    chest = self._chest
    # Every finding draws from its own stream, so adding one does not move the others.
    streams = dict(zip(FINDINGS, finding_rng.spawn(len(FINDINGS)), strict=True))
    heart_scale = streams["Cardiomegaly"].uniform(1.18, 1.35) if has["Cardiomegaly"] else 1.0
    a = chest._anatomy(anatomy_rng, heart_scale)
    painters = {
      "Enlarged Cardiomediastinum": self._wide_mediastinum,
      "Lung Opacity": chest._opacity,
      "Lung Lesion": chest._nodules,
      "Edema": self._edema,
      "Consolidation": self._consolidation,
      "Pneumonia": self._pneumonia,
      "Atelectasis": self._atelectasis,
      "Pneumothorax": self._pneumothorax,
      "Pleural Effusion": chest._effusion,
      "Pleural Other": self._pleural_thickening,
      "Fracture": self._fracture,
      "Support Devices": self._devices,
    }
    for name, paint in painters.items():
      if has[name]:
        paint(streams[name], a)
    attenuation = a["tissue"] - a["air"] + a["dense"]
    return expose_radiograph(acquisition_rng, attenuation, chest._q_rows, chest._q_cols)

  # ---------------------------------------------------------------- painters (in place)

  def _fill_air(self, a: dict, side: int, amount: np.ndarray) -> None:
    fill = amount * a["lungs"][side] * a["air_gain"]
    a["air"] -= np.minimum(fill, a["air"])

  def _wide_mediastinum(self, rng, a) -> None:
    y, x, mid = a["y"], a["x"], a["mid"]
    width = rng.uniform(0.17, 0.24)
    band = smoothstep(width - np.abs(x - mid), 0.0, 0.03) * smoothstep(y, -0.75, -0.6)
    band *= 1.0 - smoothstep(y, -0.15, 0.0)
    a["dense"] += rng.uniform(0.22, 0.3) * band
    for side in range(2):
      a["lungs"][side] *= 1.0 - band
    a["air"] *= 1.0 - 0.9 * band

  def _edema(self, rng, a) -> None:
    y, x, mid = a["y"], a["x"], a["mid"]
    for side in range(2):
      g = a["geometry"][side]
      u = g["side"] * (x - mid)
      hilum = np.hypot((y + 0.05) / 0.45, (u - 0.2) / rng.uniform(0.3, 0.4))
      haze = np.exp(-np.square(hilum)) * (0.8 + 0.2 * fractal_noise(rng, y.shape, beta=2.2))
      self._fill_air(a, side, rng.uniform(0.55, 0.75) * np.clip(haze, 0.0, 1.0))

  def _consolidation(self, rng, a) -> None:
    side = int(rng.integers(2))
    cy, cx = self._chest._lung_point(rng, a, side, lower_bias=4.0)
    radius = rng.uniform(0.18, 0.26)
    rho = np.hypot(a["y"] - cy, (a["x"] - cx) / rng.uniform(1.0, 1.5)) / radius
    self._fill_air(a, side, rng.uniform(0.8, 0.95) * smoothstep(1.0 - rho, 0.0, 0.15))

  def _pneumonia(self, rng, a) -> None:
    side = int(rng.integers(2))
    patch = np.zeros_like(a["y"])
    for _ in range(int(rng.integers(3, 6))):
      cy, cx = self._chest._lung_point(rng, a, side, lower_bias=-2.0)
      rho = np.hypot(a["y"] - cy, a["x"] - cx) / rng.uniform(0.05, 0.09)
      patch = np.maximum(patch, smoothstep(1.0 - rho, 0.0, 0.5))
    self._fill_air(a, side, rng.uniform(0.5, 0.75) * patch)

  def _atelectasis(self, rng, a) -> None:
    y, x, mid = a["y"], a["x"], a["mid"]
    for side in [int(rng.integers(2))] if rng.uniform() < 0.7 else [0, 1]:
      g = a["geometry"][side]
      level = g["bottom"] - rng.uniform(0.15, 0.3)
      tilt = rng.uniform(-0.15, 0.15) * g["side"]
      band = np.exp(-np.square((y - level - tilt * (x - mid)) / rng.uniform(0.015, 0.03)))
      self._fill_air(a, side, rng.uniform(0.7, 0.9) * band)

  def _pneumothorax(self, rng, a) -> None:
    y, x, mid = a["y"], a["x"], a["mid"]
    side = int(rng.integers(2))
    g = a["geometry"][side]
    u = g["side"] * (x - mid)
    # The collapsed lung's edge: a line parallel to the apex and lateral wall, `gap` inside it.
    gap = rng.uniform(0.06, 0.12)
    outer = np.maximum(g["top"] + gap - y, u - (g["centre"] + g["half_width"] - gap))
    outer = smoothstep(outer, -0.02, 0.02) * a["lungs"][side]
    upper = 1.0 - smoothstep(y, g["top"] + 0.5 * (g["bottom"] - g["top"]), g["bottom"])
    pocket = outer * upper
    a["air"] += rng.uniform(0.25, 0.4) * pocket * a["air_gain"]
    a["dense"] *= 1.0 - 0.8 * pocket  # no lung markings beyond the pleural line
    edge = np.exp(-np.square(smoothstep(np.abs(outer - 0.5), 0.0, 0.5) / 0.3)) * upper
    a["dense"] += 0.05 * edge * a["lungs"][side]

  def _pleural_thickening(self, rng, a) -> None:
    y, x, mid = a["y"], a["x"], a["mid"]
    side = int(rng.integers(2))
    g = a["geometry"][side]
    u = g["side"] * (x - mid)
    lateral = g["centre"] + g["half_width"]
    rim = np.exp(-np.square((u - lateral + 0.02) / rng.uniform(0.025, 0.04)))
    span = smoothstep(y, g["top"] + 0.3, g["top"] + 0.4) * (
      1.0 - smoothstep(y, g["bottom"] - 0.2, g["bottom"] - 0.1)
    )
    a["dense"] += rng.uniform(0.3, 0.4) * rim * span

  def _fracture(self, rng, a) -> None:
    y, x, mid = a["y"], a["x"], a["mid"]
    side = int(rng.integers(2))
    g = a["geometry"][side]
    cx = mid + g["side"] * (g["centre"] + g["half_width"] * rng.uniform(0.7, 0.95))
    cy = rng.uniform(g["top"] + 0.3, g["bottom"] - 0.15)
    r = max(rng.uniform(0.04, 0.06), 1.5 * a["px"])
    callus = projected_tube_profile(np.hypot(y - cy, (x - cx) / 1.6), r)
    a["dense"] += rng.uniform(0.35, 0.45) * callus
    # The step: the rib's two ends offset, a dark cleft across the callus.
    cleft = np.exp(-np.square((x - cx) / (0.6 * a["px"] + 0.01))) * (np.abs(y - cy) < r)
    a["dense"] -= 0.08 * cleft

  def _devices(self, rng, a) -> None:
    y, x, mid = a["y"], a["x"], a["mid"]
    px = a["px"]
    # A tube down the midline, swinging slightly, ending in the upper abdomen or at the carina.
    end = rng.uniform(-0.3, 0.7)
    path = mid + 0.03 * np.sin(math.pi * (y + 1.0) * rng.uniform(0.5, 1.0))
    tube = projected_tube_profile(np.abs(x - path), max(0.015, 0.8 * px)) * (y < end)
    a["dense"] += 0.9 * tube
    # Round ECG leads.
    for _ in range(int(rng.integers(2, 5))):
      ly, lx = rng.uniform(-0.7, 0.5), mid + rng.choice([-1, 1]) * rng.uniform(0.3, 0.8)
      lead = projected_tube_profile(np.hypot(y - ly, x - lx), max(0.03, 1.2 * px))
      a["dense"] += 0.8 * lead
