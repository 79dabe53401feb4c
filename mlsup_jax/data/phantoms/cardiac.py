"""Short-axis cine-MR-like slices of synthetic hearts, in the spirit of ACDC (semi-supervised).

A *patient* is a stack of `slices` short-axis slices from the base to the apex of one heart; an
example is one slice, so results can be reported per volume (`patient` says which). Labels
follow ACDC: 0 background, 1 right-ventricle cavity (RV), 2 left-ventricle myocardium (MYO),
3 left-ventricle cavity (LV).

Each heart has its own anatomy and acquisition:

* LV: an elliptical cavity whose radius shrinks from base to apex (`r(t) = r_b·√(1 − (0.9 t)²)`,
  t = 0 at the base), inside a myocardial ring of random thickness (thicker towards the apex)
  with one or two dark papillary muscles in the cavity (labelled LV, as in ACDC);
* RV: a crescent wrapped around the septum on one side, larger at the base and gone in the last
  slices before the apex, so the class sizes are strongly imbalanced (background ≫ LV > MYO ≈ RV,
  and RV absent from apical slices);
* surroundings: an elliptical chest of soft tissue (the myocardium's own brightness, so its outer
  boundary is low-contrast), two dark lungs, bright epicardial fat patches, a liver wedge at the
  bottom;
* acquisition: bright blood pool (bSSFP-like), a smooth multiplicative coil bias field (±15 %),
  slight blur, Rician noise, and a random pose (position, rotation, scale).

Splits are disjoint by patient (`case_rng(seed, split, patient)`); a config picks how many
patients each split has (ACDC: 70 / 10 / 20). `semi_supervised_split`
(`data/sources/labelled_split.py`) then splits the training patients into a labelled and an
unlabelled stream.
"""

from __future__ import annotations

import math

import numpy as np

from mlsup_jax.data.phantoms.source_base import PhantomSource
from mlsup_jax.data.phantoms.textures import gaussian_blur, smooth_random_field, smoothstep

CLASS_NAMES = ("background", "rv", "myocardium", "lv")


def _ellipse(x, y, cx, cy, a, b, angle):
  """Normalised radius `((x'/a)² + (y'/b)²)^½` of the points in an ellipse's frame."""
  c, s = math.cos(angle), math.sin(angle)
  u = (x - cx) * c + (y - cy) * s
  v = -(x - cx) * s + (y - cy) * c
  return np.sqrt((u / a) ** 2 + (v / b) ** 2)


class CardiacPhantomSource(PhantomSource):
  """ACDC-like short-axis slices (module docstring).

  Example `i` is slice `i % slices` of patient `i // slices`: `image [S, S, 1]` float32 (about
  [0, 1]), `label [S, S]` int32 in {0, 1, 2, 3}, `patient []` and `slice []` int32.

  Args:
    split: "train", "val" or "test" (disjoint patients).
    num_patients: patients in the split.
    slices: short-axis slices per patient, base to apex.
    image_size: S.
    seed: base seed.
  """

  CLASS_NAMES = CLASS_NAMES
  NUM_CLASSES = len(CLASS_NAMES)

  def __init__(
    self,
    split: str = "train",
    num_patients: int = 20,
    slices: int = 8,
    image_size: int = 64,
    seed: int = 0,
  ):
    if int(slices) < 2:
      raise ValueError(f"slices must be ≥ 2 (base to apex), got {slices}.")
    if int(image_size) < 32:
      raise ValueError(f"image_size must be ≥ 32, got {image_size}.")
    super().__init__(split, num_patients, seed, cache_size=64)
    self.slices = int(slices)
    self.image_size = int(image_size)
    self.patient_ids = np.repeat(np.arange(self.num_cases), self.slices).astype(np.int64)
    self.case_ids = [f"{split}_patient{p:03d}_slice{z:02d}" for p, z in np.ndindex(
      self.num_cases, self.slices)]  # fmt: skip

  def __len__(self) -> int:
    return self.num_cases * self.slices

  def __getitem__(self, index: int) -> dict:
    index = self._check_index(index)
    patient, z = divmod(index, self.slices)
    volume = self.case(patient)
    return {
      "image": np.array(volume["image"][z], copy=True),
      "label": np.array(volume["label"][z], copy=True),
      "patient": np.int32(patient),
      "slice": np.int32(z),
    }

  def generate(self, rng: np.random.Generator, index: int) -> dict:
    """Patient `index`: `image [D, S, S, 1]`, `label [D, S, S]`."""
    del index
    size, depth = self.image_size, self.slices
    y, x = np.mgrid[:size, :size].astype(np.float32) / size  # unit coordinates
    # Pose and anatomy of this heart.
    cx, cy = 0.5 + rng.normal(0, 0.04, size=2)
    angle = rng.uniform(-0.6, 0.6)
    scale = rng.uniform(0.85, 1.15)
    r_base = scale * rng.uniform(0.11, 0.15)
    ellipticity = rng.uniform(0.82, 1.0)
    wall = scale * rng.uniform(0.035, 0.055)
    rv_side = angle + math.pi * rng.uniform(0.85, 1.15)  # the RV sits on the septal side
    rv_extent = rng.uniform(0.6, 0.85)  # fraction of slices (from the base) with an RV
    papillary = rng.integers(1, 3)
    blood = rng.uniform(0.8, 0.95)
    muscle = rng.uniform(0.28, 0.38)
    noise = rng.uniform(0.025, 0.05)
    chest = (_ellipse(x, y, 0.5, 0.52, 0.47, 0.4, 0.0) < 1).astype(np.float32)
    lungs = sum(
      (_ellipse(x, y, 0.5 + side * rng.uniform(0.26, 0.32), 0.45, 0.14, 0.25, side * 0.3) < 1)
      for side in (-1, 1)
    ).astype(np.float32)
    liver = (_ellipse(x, y, 0.35, 0.92, 0.35, 0.15, 0.2) < 1).astype(np.float32)
    images, labels = [], []
    for z in range(depth):
      t = z / (depth - 1)  # 0 base … 1 apex
      r_lv = r_base * math.sqrt(max(1.0 - (0.9 * t) ** 2, 0.02))
      w = wall * (1.0 + 0.4 * t)
      lv = _ellipse(x, y, cx, cy, r_lv, r_lv * ellipticity, angle)
      cavity = lv < 1.0
      myocardium = (lv >= 1.0) & (
        _ellipse(x, y, cx, cy, r_lv + w, (r_lv + w) * ellipticity, angle) < 1
      )
      label = np.zeros((size, size), np.int32)
      if t <= rv_extent:
        rv_size = (1.0 - t / max(rv_extent, 1e-3)) ** 0.6
        offset = r_lv + 0.5 * w + 0.5 * r_base * rv_size
        rx, ry = cx + offset * math.cos(rv_side), cy + offset * math.sin(rv_side)
        rv = _ellipse(
          x,
          y,
          rx,
          ry,
          1.7 * r_base * rv_size + 1e-3,
          0.75 * r_base * rv_size + 1e-3,
          rv_side + math.pi / 2,
        )
        outer = _ellipse(x, y, cx, cy, r_lv + 1.1 * w, (r_lv + 1.1 * w) * ellipticity, angle)
        label[(rv < 1.0) & (outer >= 1.0)] = 1
      label[myocardium] = 2
      label[cavity] = 3
      # Intensities: tissue, lungs, fat, liver, blood pool, myocardium, papillary muscles.
      image = chest * (muscle + 0.04 * smooth_random_field(rng, (size, size), size / 20))
      image = image * (1.0 - 0.85 * lungs) + liver * 0.1
      fat = smooth_random_field(rng, (size, size), size / 25) > 1.2
      ring = _ellipse(x, y, cx, cy, r_lv + 2.2 * w, (r_lv + 2.2 * w) * ellipticity, angle) < 1
      image = np.where(fat & ring & (label == 0), 0.7, image)
      image = np.where(label == 2, muscle + rng.normal(0, 0.02), image)
      image = np.where((label == 1) | (label == 3), blood, image)
      for _ in range(papillary):
        a = rng.uniform(0, 2 * math.pi)
        px, py = cx + 0.6 * r_lv * math.cos(a), cy + 0.6 * r_lv * math.sin(a)
        image = np.where(cavity & (_ellipse(x, y, px, py, 0.02, 0.02, 0) < 1), muscle, image)
      image = gaussian_blur(image, 0.7)
      bias = 1.0 + 0.3 * smoothstep(smooth_random_field(rng, (size, size), size / 3), -2, 2) - 0.15
      image = image * bias
      real, imag = image + rng.normal(0, noise, image.shape), rng.normal(0, noise, image.shape)
      images.append(np.sqrt(real * real + imag * imag).astype(np.float32)[..., None])
      labels.append(label)
    return {"image": np.stack(images), "label": np.stack(labels)}
