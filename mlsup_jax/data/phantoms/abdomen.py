"""Abdominal CT-like slices or small volumes with near-OOD liver tumours (MaxQuery, seeds §1).

Each case is a portal-venous-phase upper-abdomen CT crop in Hounsfield units (HU), centred on
the liver (patient's right on the image left, anterior at the top):

* an elliptical body (air outside) with subcutaneous fat, an abdominal muscle wall with rib
  cross-sections, visceral fat, paraspinal muscles and a vertebra (cancellous bone with a bright
  cortex, spinal canal and posterior elements);
* distractor organs and vessels: aorta, inferior vena cava (IVC), the right kidney (cortex and
  medulla), the stomach (wall, fluid / food content, sometimes a gas cap), bowel loops with gas or
  faeces, and sometimes a fluid-filled gallbladder (cyst-like, but outside the liver);
* the target organ, a liver: a smooth union of a right and a left lobe with random lobulation,
  moulded by the cavity wall and the neighbouring organs, with fractal parenchymal texture and
  brighter intrahepatic vessels;
* at most one tumour inside the liver, of one of five subtypes (below);
* acquisition: a random contrast-phase shift (±10 HU on enhancing tissue), scanner blur and
  slightly correlated Gaussian noise (10–20 HU), plus a random pose (rotation, scale, shift).

Tumour subtypes (Δ = HU relative to the liver parenchyma level of the case; radius 4–12 px at
image_size 64, scaled with image_size). The three inlier subtypes are label classes; the two OOD
subtypes are never in the training split by default. The OOD subtypes are *near*-OOD: their
mean contrast lies between the inlier ones and overlaps the metastasis range, so no single
intensity threshold separates them (the tests measure an AUROC of 0.5–0.6 for the mean
contrast alone); they differ in a combination of spatial pattern, margin and texture:

* hcc (subtype 0, class 2): Δ +5…+30 with a patchy mosaic texture (±8–18 HU), usually a thin
  enhancing capsule, round-oval, fairly sharp margin;
* cyst (1, class 3): water (0…20 HU), homogeneous, very sharp margin, round;
* metastasis (2, class 4): dark core (Δ −70…−40) fading into a continuous brighter rim
  (Δ −15…+10, the target sign), slightly irregular margin;
* hemangioma (3, OOD): dark core (Δ −75…−45) with 4–8 *discontinuous* bright peripheral nodules
  (Δ +20…+60), lobulated margin;
* icc (4, OOD): Δ −55…−32 with faint brighter fibrous strands and a faint irregular peripheral
  rim, blurred (1.5–2.5 px) spiculated margin, irregular shape, no capsule.

Hemangiomas and iccs are drawn slightly smaller so that lobes and spicules do not make OOD
tumours larger than inlier ones.

Labels: 0 background (everything but the liver and inlier tumours), 1 liver, 2/3/4 inlier
tumours. OOD tumour pixels are labelled 0 and flagged in `ood`; `lesion` marks any tumour.

`organs="multi"` (LTUDA's multi-organ task) also paints the left kidney, the spleen and the
pancreas (`abdomen_anatomy`, from a separate random stream, so every other draw of a case — and
every `organs="liver"` case — is unchanged) and labels 0 background, 1 liver (tumours included),
2 kidneys, 3 spleen, 4 pancreas (`MULTI_ORGAN_CLASS_NAMES`).

In 3-D, every structure is a solid (ellipsoids, cylinders along z, 3-D fractal textures) sampled
on `depth` slices twice as thick as the in-plane pixels; a 2-D case is one such slice through the
tumour centre. Both share one code path.

This module holds the public source (split contents, pose grid, acquisition and labels); the
anatomy is painted by `abdomen_anatomy`, the tumours by `abdomen_tumours`, both from the
signed-distance shapes of `shapes`.
"""

from __future__ import annotations

import math

import numpy as np

from mlsup_jax.data.phantoms.abdomen_anatomy import AIR_HU as AIR_HU
from mlsup_jax.data.phantoms.abdomen_anatomy import paint_anatomy
from mlsup_jax.data.phantoms.abdomen_tumours import paint_tumour
from mlsup_jax.data.phantoms.source_base import PhantomSource, split_id
from mlsup_jax.data.phantoms.textures import fractal_noise, gaussian_blur

# Image side and depth constraints (mask transformers down-sample by 16; volumes by 8 in z).
SIZE_MULTIPLE = 16
MIN_IMAGE_SIZE = 32
DEPTH_MULTIPLE = 8
# Slice thickness in in-plane pixels (3-D volumes are anisotropic, like most abdominal CT).
SLICE_THICKNESS = 2.0
ORGAN_SETS = ("liver", "multi")
MULTI_ORGAN_CLASS_NAMES = ("background", "liver", "kidneys", "spleen", "pancreas")
# Stream of the extra organs (4-word seeds never coincide with the 3-word `case_rng` streams).
_ORGAN_STREAM = 0x4F52474E

# Memory for cached cases (image float32 + label int32 + two uint8 masks: 10 bytes a voxel).
CACHE_BYTES = 256 * 2**20
# Default split contents.
TRAIN_TUMOUR_FRACTION = 0.85
EVAL_OOD_FRACTION = 0.4

SUBTYPE_NAMES = ("hcc", "cyst", "metastasis", "hemangioma", "icc")
NUM_INLIER_SUBTYPES = 3


class AbdomenPhantomSource(PhantomSource):
  """Synthetic abdominal CT slices or volumes with inlier and near-OOD liver tumours.

  Examples are dicts of numpy arrays, `S = (H, W)` (2-D) or `(D, H, W)` (3-D):

  * `image: [*S, 1]` float32 in HU (air ≈ −1000, fat ≈ −100, liver ≈ 90–130, bone ≥ 400);
  * `label: [*S]` int32: 0 background, 1 liver, 2 hcc, 3 cyst, 4 metastasis (OOD tumour pixels
    are 0);
  * `ood: [*S]` uint8, 1 on OOD tumour pixels; `lesion: [*S]` uint8, 1 on any tumour pixel
    (`lesion == (label >= 2) | ood`);
  * `case_ood: []` int32, 1 if the case has an OOD tumour;
  * `subtype: []` int32, −1 without a tumour, else the index into `SUBTYPE_NAMES` (0–2 inlier in
    class order, 3–4 OOD).

  Args:
    split: "train", "val" or "test"; each split draws disjoint cases.
    num_cases: number of cases in the split.
    image_size: H = W, a multiple of 16, ≥ 32.
    spatial_dims: 2 (slices) or 3 (volumes of `depth` slices).
    depth: number of slices of a 3-D volume, a multiple of 8, ≥ 8 (ignored in 2-D).
    seed: non-negative base seed.
    ood_fraction: probability that a tumour is of an OOD subtype. None: 0 for "train" (the
      training set never shows OOD subtypes), 0.4 otherwise.
    tumour_fraction: probability that a case has a tumour. None: 0.85 for "train", 1 otherwise.
    organs: "liver" (the labels above) or "multi" (liver, kidneys, spleen, pancreas; module
      docstring).

  Attributes:
    NUM_CLASSES: number of label classes (background, liver and three inlier tumours).
    CLASS_NAMES: the label classes' names.
    OOD_SUBTYPE_NAMES: names of the held-out subtypes (subtype indices 3 and 4).
    SUBTYPE_NAMES: names of all five subtypes, indexed by `subtype`.
    CLASS_GROUPS: class → group for the query-distribution loss (background 0, organ 1,
      tumours 2).

  Raises:
    ValueError: on an unknown split or an invalid count, size, depth, seed or fraction.
  """

  NUM_CLASSES = 5
  CLASS_NAMES = ("background", "liver", "hcc", "cyst", "metastasis")
  OOD_SUBTYPE_NAMES = SUBTYPE_NAMES[NUM_INLIER_SUBTYPES:]
  SUBTYPE_NAMES = SUBTYPE_NAMES
  CLASS_GROUPS = (0, 1, 2, 2, 2)

  def __init__(
    self,
    split: str = "train",
    num_cases: int = 64,
    image_size: int = 64,
    spatial_dims: int = 2,
    depth: int = 16,
    seed: int = 0,
    ood_fraction: float | None = None,
    tumour_fraction: float | None = None,
    organs: str = "liver",
  ):
    split_id(split)
    if organs not in ORGAN_SETS:
      raise ValueError(f"organs must be one of {ORGAN_SETS}, got {organs!r}.")
    num_cases = _integer("num_cases", num_cases)
    image_size = _integer("image_size", image_size)
    spatial_dims = _integer("spatial_dims", spatial_dims)
    depth = _integer("depth", depth)
    if image_size < MIN_IMAGE_SIZE or image_size % SIZE_MULTIPLE:
      raise ValueError(
        f"image_size must be a multiple of {SIZE_MULTIPLE} and ≥ {MIN_IMAGE_SIZE} (mask "
        f"transformers down-sample by {SIZE_MULTIPLE}), got {image_size}."
      )
    if spatial_dims not in (2, 3):
      raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
    if depth < DEPTH_MULTIPLE or depth % DEPTH_MULTIPLE:
      raise ValueError(f"depth must be a positive multiple of {DEPTH_MULTIPLE}, got {depth}.")
    if ood_fraction is None:
      ood_fraction = 0.0 if split == "train" else EVAL_OOD_FRACTION
    if tumour_fraction is None:
      tumour_fraction = TRAIN_TUMOUR_FRACTION if split == "train" else 1.0
    ood_fraction = _probability("ood_fraction", ood_fraction)
    tumour_fraction = _probability("tumour_fraction", tumour_fraction)
    shape = (depth, image_size, image_size) if spatial_dims == 3 else (image_size, image_size)
    cache_size = max(1, min(num_cases, CACHE_BYTES // (10 * math.prod(shape))))
    super().__init__(split, num_cases, _integer("seed", seed), cache_size=cache_size)
    self.image_size = image_size
    self.spatial_dims = spatial_dims
    self.depth = depth
    self.ood_fraction = ood_fraction
    self.tumour_fraction = tumour_fraction
    self.shape = shape
    self.organs = organs
    self.class_names = self.CLASS_NAMES if organs == "liver" else MULTI_ORGAN_CLASS_NAMES
    # Pixel centres in [-1, 1] (row, col), shared by every case.
    q = ((np.arange(image_size, dtype=np.float32) + 0.5) / image_size) * 2.0 - 1.0
    self._q_rows, self._q_cols = np.meshgrid(q, q, indexing="ij")

  # -------------------------------------------------------------------------------- generation

  def generate(self, rng: np.random.Generator, index: int) -> dict[str, np.ndarray]:
    """One case (see the class docstring for the keys)."""
    # Everything comes from `rng`, except the extra organs of `organs="multi"` (own stream).
    # The tumour's presence and subtype come first, so the anatomy of a case does not depend on
    # the fractions.
    has_tumour = rng.uniform() < self.tumour_fraction
    is_ood = rng.uniform() < self.ood_fraction
    within = rng.uniform()
    subtype = -1
    if has_tumour:
      if is_ood:
        count = len(SUBTYPE_NAMES) - NUM_INLIER_SUBTYPES
        subtype = NUM_INLIER_SUBTYPES + min(int(within * count), count - 1)
      else:
        subtype = min(int(within * NUM_INLIER_SUBTYPES), NUM_INLIER_SUBTYPES - 1)

    grid = self._grid(rng)
    organ_rng, organ_masks = None, {}
    if self.organs == "multi":
      organ_rng = np.random.default_rng([self.seed, split_id(self.split), index, _ORGAN_STREAM])
    image, liver, liver_soft, level = paint_anatomy(
      rng, grid, self.shape, self._noise, organ_rng=organ_rng, organ_masks=organ_masks
    )
    lesion = np.zeros(self.shape, bool)
    if subtype >= 0:
      lesion = paint_tumour(
        rng, grid, image, liver, liver_soft, level, subtype, self._noise, SLICE_THICKNESS
      )

    # Acquisition: scanner blur, then slightly correlated noise (blurred white noise).
    sigma = rng.uniform(0.5, 0.8)
    image = gaussian_blur(image, self._sigma(sigma))
    noise = gaussian_blur(rng.standard_normal(self.shape, dtype=np.float32), self._sigma(0.6))
    noise *= np.float32(rng.uniform(10.0, 20.0) / max(float(noise.std()), 1e-6))
    image = np.clip(image + noise, -1024.0, 3071.0).astype(np.float32)

    ood = lesion if subtype >= NUM_INLIER_SUBTYPES else np.zeros_like(lesion)
    label = liver.astype(np.int32)
    if self.organs == "multi":
      for value, name in enumerate(("kidney", "spleen", "pancreas"), start=2):
        label[organ_masks[name]] = value
    else:
      label[lesion] = 2 + subtype if 0 <= subtype < NUM_INLIER_SUBTYPES else 0
    return {
      "image": np.ascontiguousarray(image[..., None]),
      "label": np.ascontiguousarray(label),
      "ood": ood.astype(np.uint8),
      "lesion": lesion.astype(np.uint8),
      "case_ood": np.asarray(int(subtype >= NUM_INLIER_SUBTYPES), np.int32),
      "subtype": np.asarray(subtype, np.int32),
    }

  def _sigma(self, sigma: float) -> float | tuple[float, float, float]:
    """An in-plane blur sigma (pixels) for this case's grid (thinner along z in 3-D)."""
    return (sigma / SLICE_THICKNESS, sigma, sigma) if self.spatial_dims == 3 else sigma

  def _noise(self, rng: np.random.Generator, **kwargs) -> np.ndarray:
    """`fractal_noise` on the case grid; wavelengths in in-plane pixels at image_size 64."""
    scale = self.image_size / 64.0
    for key in ("max_wavelength", "min_wavelength"):
      if kwargs.get(key) is not None:
        kwargs[key] = kwargs[key] * scale
    stretch = (1.0 / SLICE_THICKNESS, 1.0, 1.0) if self.spatial_dims == 3 else None
    return fractal_noise(rng, self.shape, stretch=stretch, **kwargs)

  def _grid(self, rng: np.random.Generator) -> dict:
    """Body-frame coordinates of every voxel under a random pose.

    The body frame has y anterior → posterior, x patient right → left (image left → right) and z
    along the body axis, in units of about half the body's depth (the body's half-width is
    1.05–1.2 units).

    Returns:
      `y`, `x`: `[H, W]` (2-D) or `[1, H, W]` (3-D) float32; `z`: a float32 scalar (the slice
      position) or `[D, 1, 1]`; `px`: the in-plane pixel size in body units.
    """
    angle = rng.uniform(-0.12, 0.12)
    scale = rng.uniform(0.84, 0.94)  # field of view: an upper-abdomen crop around the liver
    shift = (-0.05 + rng.uniform(-0.05, 0.05), -0.34 + rng.uniform(-0.05, 0.05))
    if self.organs == "multi":  # The whole abdomen, not a crop around the liver (same draws).
      scale, shift = scale * 1.3, (shift[0] + 0.05, shift[1] + 0.34)
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    y = cos * self._q_rows - sin * self._q_cols + np.float32(shift[0])
    x = sin * self._q_rows + cos * self._q_cols + np.float32(shift[1])
    px = 2.0 * scale / self.image_size
    z0 = rng.uniform(-0.35, 0.35)
    if self.spatial_dims == 3:
      offsets = np.arange(self.depth, dtype=np.float32) - (self.depth - 1) / 2.0
      z = (z0 + offsets * SLICE_THICKNESS * px).astype(np.float32)[:, None, None]
      y, x = y[None], x[None]
    else:
      z = np.float32(z0)
    return {"y": y.astype(np.float32), "x": x.astype(np.float32), "z": z, "px": px}


def _integer(name: str, value) -> int:
  """`value` as an int, rejecting bools, non-numbers and non-integral numbers."""
  try:
    integral = not isinstance(value, bool) and float(value).is_integer()
  except (TypeError, ValueError):
    integral = False
  if not integral:
    raise ValueError(f"{name} must be an integer, got {value!r}.")
  return int(value)


def _probability(name: str, value) -> float:
  """`value` as a float in [0, 1], rejecting bools, non-numbers and NaN."""
  try:
    valid = not isinstance(value, bool) and 0.0 <= float(value) <= 1.0
  except (TypeError, ValueError):
    valid = False
  if not valid:
    raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")
  return float(value)
