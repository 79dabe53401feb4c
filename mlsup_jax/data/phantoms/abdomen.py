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

In 3-D, every structure is a solid (ellipsoids, cylinders along z, 3-D fractal textures) sampled
on `depth` slices twice as thick as the in-plane pixels; a 2-D case is one such slice through the
tumour centre. Both share one code path.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from mlsup_jax.data.phantoms.framework import (
  PhantomSource,
  fractal_noise,
  gaussian_blur,
  smoothstep,
  split_id,
)

# Image side and depth constraints (mask transformers down-sample by 16; volumes by 8 in z).
SIZE_MULTIPLE = 16
MIN_IMAGE_SIZE = 32
DEPTH_MULTIPLE = 8
# Slice thickness in in-plane pixels (3-D volumes are anisotropic, like most abdominal CT).
SLICE_THICKNESS = 2.0
# Memory for cached cases (image float32 + label int32 + two uint8 masks: 10 bytes a voxel).
CACHE_BYTES = 256 * 2**20
# Default split contents.
TRAIN_TUMOUR_FRACTION = 0.85
EVAL_OOD_FRACTION = 0.4
AIR_HU = -1000.0

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
  ):
    split_id(split)
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
    # Pixel centres in [-1, 1] (row, col), shared by every case.
    q = ((np.arange(image_size, dtype=np.float32) + 0.5) / image_size) * 2.0 - 1.0
    self._q_rows, self._q_cols = np.meshgrid(q, q, indexing="ij")

  # -------------------------------------------------------------------------------- generation

  def generate(self, rng: np.random.Generator, index: int) -> dict[str, np.ndarray]:
    """One case (see the class docstring for the keys)."""
    del index  # Everything comes from `rng`.
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
    image, liver, liver_soft, level = self._anatomy(rng, grid)
    lesion = np.zeros(self.shape, bool)
    if subtype >= 0:
      lesion = self._tumour(rng, grid, image, liver, liver_soft, level, subtype)

    # Acquisition: scanner blur, then slightly correlated noise (blurred white noise).
    sigma = rng.uniform(0.5, 0.8)
    image = gaussian_blur(image, self._sigma(sigma))
    noise = gaussian_blur(rng.standard_normal(self.shape, dtype=np.float32), self._sigma(0.6))
    noise *= np.float32(rng.uniform(10.0, 20.0) / max(float(noise.std()), 1e-6))
    image = np.clip(image + noise, -1024.0, 3071.0).astype(np.float32)

    ood = lesion if subtype >= NUM_INLIER_SUBTYPES else np.zeros_like(lesion)
    label = liver.astype(np.int32)
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

  def _anatomy(self, rng, grid):
    """Paints the body and organs.

    Returns:
      image: `[*S]` float32 HU, before blur and noise.
      liver: `[*S]` bool liver mask (the organ label).
      liver_soft: `[*S]` float32 anti-aliased liver coverage in [0, 1].
      level: the parenchyma's mean HU in this case (phase shift included).
    """
    y, x, z, px = grid["y"], grid["x"], grid["z"], grid["px"]
    coords = (y, x, z)
    image = np.full(self.shape, AIR_HU, np.float32)
    phase = rng.uniform(-10.0, 10.0)  # contrast timing: enhancing tissue brighter or darker
    fat_texture = self._noise(rng, beta=2.4, max_wavelength=24.0)
    tissue_texture = self._noise(rng, beta=2.6, max_wavelength=16.0)

    def inside(distance):
      return np.clip(0.5 - distance / px, 0.0, 1.0).astype(np.float32)

    # Body: a superellipse (flatter back and sides) with fat, muscle wall and visceral fat.
    ay, ax = rng.uniform(0.78, 0.88), rng.uniform(1.05, 1.2)
    power = rng.uniform(2.0, 2.6)
    body_r = (np.abs(y / ay) ** power + np.abs(x / ax) ** power) ** (1.0 / power)
    body_d = (body_r - 1.0) * ay
    fat_thickness, wall_thickness = rng.uniform(0.05, 0.14), rng.uniform(0.04, 0.07)
    fat_level = rng.uniform(-110.0, -90.0)
    _paint(image, inside(body_d), fat_level + 8.0 * fat_texture)
    _paint(image, inside(body_d + fat_thickness), rng.uniform(40.0, 60.0) + 4.0 * tissue_texture)
    cavity_d = body_d + fat_thickness + wall_thickness
    _paint(image, inside(cavity_d), fat_level + 5.0 + 10.0 * fat_texture)

    # Ribs: small bright ovals in the muscle wall, mostly along the right (image-left) side.
    wall_r = 1.0 - (fat_thickness + 0.5 * wall_thickness) / ay
    for phi in np.concatenate(
      [rng.uniform(0.55, 1.35, int(rng.integers(3, 6))), rng.uniform(-0.45, -0.2, 1)]
    ):
      centre = (ay * wall_r * math.sin(math.pi * phi), ax * wall_r * math.cos(math.pi * phi))
      rib_d = _ellipsoid_distance(coords, centre, (0.045, 0.03), rng.uniform(0, math.pi))
      _paint(image, inside(rib_d), rng.uniform(450.0, 750.0))

    # Spine: paraspinal muscles, vertebral body (cortex + cancellous bone), canal, lamina.
    yv = ay - 0.42
    muscles_d = [
      _ellipsoid_distance(coords, (ay - 0.2, side * 0.21), (0.14, 0.15)) for side in (-1.0, 1.0)
    ]
    for muscle_d in muscles_d:
      _paint(image, inside(muscle_d), rng.uniform(45.0, 60.0) + 4.0 * tissue_texture)
    vertebra_radius = rng.uniform(0.13, 0.16)
    vertebra_d = _ellipsoid_distance(coords, (yv, 0.0), (vertebra_radius, vertebra_radius * 1.1))
    _paint(image, inside(vertebra_d), rng.uniform(600.0, 900.0))
    _paint(image, inside(vertebra_d + 0.045), rng.uniform(200.0, 320.0) + 25.0 * tissue_texture)
    lamina_d = _ellipsoid_distance(coords, (yv + vertebra_radius + 0.06, 0.0), (0.09, 0.11))
    _paint(image, inside(lamina_d), rng.uniform(600.0, 900.0))
    canal_d = _ellipsoid_distance(coords, (yv + vertebra_radius + 0.05, 0.0), (0.05, 0.055))
    _paint(image, inside(canal_d), rng.uniform(0.0, 20.0))
    spinous_d = _ellipsoid_distance(coords, (yv + vertebra_radius + 0.2, 0.0), (0.07, 0.025))
    _paint(image, inside(spinous_d), rng.uniform(450.0, 750.0))

    # Great vessels.
    aorta_d = _ellipsoid_distance(
      coords, (yv - vertebra_radius - 0.06, 0.1), (rng.uniform(0.065, 0.085),) * 2
    )
    _paint(image, inside(aorta_d), rng.uniform(140.0, 180.0) + 2.0 * phase)
    ivc_centre = (yv - 0.28 + rng.uniform(-0.04, 0.04), -0.22 + rng.uniform(-0.04, 0.04))
    ivc_d = _ellipsoid_distance(coords, ivc_centre, (0.065, 0.09), rng.uniform(-0.5, 0.5))
    _paint(image, inside(ivc_d), rng.uniform(110.0, 150.0) + phase)

    # Right kidney (behind the liver): enhancing cortex around the medulla.
    kidney_centre = (yv - 0.02 + rng.uniform(-0.05, 0.05), -0.5 + rng.uniform(-0.05, 0.05))
    kidney_args = (
      (*kidney_centre, rng.uniform(-0.45, 0.25)),
      (rng.uniform(0.17, 0.22), rng.uniform(0.11, 0.14), 0.35),
      rng.uniform(0.3, 0.8),
    )
    kidney_d = _ellipsoid_distance(coords, *kidney_args)
    _paint(image, inside(kidney_d), rng.uniform(150.0, 190.0) + phase + 5.0 * tissue_texture)
    medulla_d = kidney_d + 0.045
    _paint(image, inside(medulla_d), rng.uniform(100.0, 130.0) + phase)

    # Bowel loops (gas, fluid or faeces); the liver and stomach are painted over them.
    for _ in range(int(rng.integers(1, 4))):
      centre = (rng.uniform(-0.6, 0.0), rng.uniform(-0.3, 0.5), rng.uniform(-0.4, 0.4))
      radius = rng.uniform(0.07, 0.13)
      loop_d = _ellipsoid_distance(coords, centre, (radius, radius * rng.uniform(1.0, 1.4), 0.4))
      _paint(image, inside(loop_d), rng.uniform(30.0, 60.0) + phase)
      content = rng.integers(3)
      value = (AIR_HU + 50.0, rng.uniform(5.0, 30.0), rng.uniform(-80.0, 20.0))[content]
      _paint(image, inside(loop_d + 0.025), value + (60.0 * fat_texture if content == 2 else 0.0))

    # Stomach (image right, anterior): wall, fluid or food, often a gas cap.
    stomach_centre = (-0.3 + rng.uniform(-0.08, 0.08), 0.5 + rng.uniform(-0.08, 0.08))
    stomach_axes = (rng.uniform(0.22, 0.32), rng.uniform(0.2, 0.3), 0.5)
    stomach_d = _ellipsoid_distance(coords, (*stomach_centre, 0.0), stomach_axes, 0.4)
    _paint(image, inside(stomach_d), rng.uniform(40.0, 70.0) + phase)
    lumen = inside(stomach_d + 0.04)
    food = rng.uniform() < 0.4
    _paint(image, lumen, rng.uniform(0.0, 25.0) + (30.0 * fat_texture if food else 0.0))
    if rng.uniform() < 0.6:
      gas_level = stomach_centre[0] - stomach_axes[0] * rng.uniform(0.1, 0.7)
      _paint(image, lumen * inside(y - gas_level), AIR_HU + 60.0)

    # Gallbladder (sometimes): water-like, outside the liver label.
    gallbladder_d = np.full((1,) * len(self.shape), np.inf, np.float32)
    if rng.uniform() < 0.45:
      centre = (-0.22 + rng.uniform(-0.08, 0.08), -0.2 + rng.uniform(-0.08, 0.08))
      gallbladder_d = _ellipsoid_distance(
        coords,
        (*centre, rng.uniform(-0.3, 0.3)),
        (rng.uniform(0.1, 0.15), rng.uniform(0.07, 0.1), 0.3),
        rng.uniform(0.0, math.pi),
      )
      _paint(image, inside(gallbladder_d), rng.uniform(0.0, 25.0))

    # Liver: smooth union of a right and a left lobe, lobulated, carved by its neighbours.
    right_centre = (rng.uniform(-0.08, 0.04), rng.uniform(-0.6, -0.5), 0.0)
    right_axes = (rng.uniform(0.58, 0.68), rng.uniform(0.48, 0.58), 0.9)
    right_d = _ellipsoid_distance(coords, right_centre, right_axes, rng.uniform(-0.2, 0.2))
    left_d = _ellipsoid_distance(
      coords,
      (rng.uniform(-0.47, -0.37), rng.uniform(-0.1, 0.0), rng.uniform(-0.2, 0.2)),
      (rng.uniform(0.16, 0.22), rng.uniform(0.36, 0.46), 0.6),
      rng.uniform(0.2, 0.5),
    )
    liver_d = _smooth_min(right_d, left_d, 0.15)
    liver_d -= right_axes[0] * _bumps(
      _directions(coords, right_centre, right_axes),
      _unit_vectors(rng, 6, planar=False),
      rng.uniform(-0.08, 0.08, 6),
      rng.uniform(2.0, 6.0, 6),
    )
    liver_d = np.maximum(liver_d, cavity_d + 0.01)
    for other_d, gap in (
      (kidney_d, 0.04),
      (stomach_d, 0.05),
      (ivc_d, 0.015),
      (gallbladder_d, 0.015),
      (aorta_d, 0.08),
      (vertebra_d, 0.08),
      *((muscle_d, 0.03) for muscle_d in muscles_d),
    ):
      liver_d = np.maximum(liver_d, gap - other_d)
    liver_d = np.broadcast_to(liver_d, self.shape)
    liver_soft = inside(liver_d)
    level = rng.uniform(100.0, 120.0) + phase
    # Vessel cross-sections (dots and short segments): the peaks of a smooth field.
    vessel_source = self._noise(rng, beta=3.5, min_wavelength=4.0, max_wavelength=16.0)
    vessels = smoothstep(vessel_source, 1.2, 1.9) * smoothstep(-liver_d, 0.0, 0.08)
    parenchyma = level + rng.uniform(4.0, 8.0) * tissue_texture
    parenchyma += (rng.uniform(45.0, 75.0) + phase) * vessels
    _paint(image, liver_soft, parenchyma)
    return image, liver_d < 0.0, liver_soft, level

  def _tumour(self, rng, grid, image, liver, liver_soft, level, subtype) -> np.ndarray:
    """Paints one tumour of `subtype` into `image` (in place), inside the liver.

    Returns:
      `[*S]` bool tumour mask, a subset of `liver`.
    """
    px = grid["px"]
    planar = self.spatial_dims == 2
    scale = self.image_size / 64.0
    # Lobes and spicules enlarge hemangiomas and iccs; size must not give OOD away.
    radius_px = rng.uniform(4.0, 12.0) * scale * (1.0, 1.0, 1.0, 0.92, 0.85)[subtype]
    # Centre: a liver voxel deep enough for the radius (3-D: in the middle half of the slab).
    sampling = (SLICE_THICKNESS, 1.0, 1.0) if not planar else None
    # Zero padding: the field of view's border counts as the organ's edge, so tumours stay whole.
    depth_map = ndimage.distance_transform_edt(np.pad(liver, 1), sampling=sampling)
    depth_map = depth_map[(slice(1, -1),) * liver.ndim]
    if not planar:
      depth_map[: self.depth // 4] = 0.0
      depth_map[self.depth - self.depth // 4 :] = 0.0
    deepest = float(depth_map.max())
    radius_px = max(min(radius_px, (deepest - 1.0) / 1.1), 2.0 * scale)
    candidates = np.flatnonzero(depth_map >= min(1.1 * radius_px + 1.0, deepest))
    centre_index = np.unravel_index(candidates[rng.integers(len(candidates))], self.shape)
    y, x, z = (np.broadcast_to(grid[k], self.shape) for k in ("y", "x", "z"))
    centre = (y[centre_index], x[centre_index], z[centre_index])
    radius = radius_px * px

    # Local frame: a random rotation (in-plane in 2-D) and aspect ratio per subtype.
    aspect = (1.3, 1.12, 1.25, 1.3, 1.55)[subtype]
    axes = radius * np.array([1.0, 1.0 / rng.uniform(1.0, aspect), rng.uniform(0.85, 1.0)])
    rotation = _random_rotation(rng, planar)
    offsets = (grid["y"] - centre[0], grid["x"] - centre[1], grid["z"] - centre[2])
    local = [sum(rotation[k, j] * offsets[j] for j in range(3)) / axes[k] for k in range(3)]
    rho = np.sqrt(sum(w * w for w in local))
    unit = [w / np.maximum(rho, 1e-6) for w in local]

    # Margin: smooth lobes (lobulated / irregular) and narrow spikes (spiculated).
    lobes = {0: (3, 0.0, 0.06), 1: (0, 0.0, 0.0), 2: (5, -0.08, 0.12), 3: (6, 0.06, 0.18)}
    count, low, high = lobes.get(subtype, (3, -0.15, 0.15))
    bumps = _bumps(
      unit,
      _unit_vectors(rng, count, planar),
      rng.uniform(low, high, count),
      rng.uniform(3.0, 8.0, count),
    )
    if subtype == 4:  # icc: spicules
      count = int(rng.integers(7, 13))
      bumps += _bumps(
        unit,
        _unit_vectors(rng, count, planar),
        rng.uniform(0.15, 0.35, count),
        rng.uniform(20.0, 40.0, count),
      )
    rho = rho / np.maximum(1.0 + bumps, 0.3)

    fine = self._noise(rng, beta=2.0)
    edge_px = (0.7, 0.35, 1.0, 0.6, rng.uniform(1.5, 2.5))[subtype]
    if subtype == 0:  # hcc: iso/hyper, mosaic, thin enhancing capsule
      mosaic = np.tanh(1.5 * self._noise(rng, beta=3.0, min_wavelength=3.0, max_wavelength=12.0))
      capsule = np.exp(-np.square((rho - 0.94) / (1.0 / radius_px)))
      capsule_gain = rng.uniform(15.0, 35.0) if rng.uniform() < 0.85 else 0.0
      delta = rng.uniform(5.0, 30.0) + rng.uniform(8.0, 18.0) * mosaic + capsule_gain * capsule
    elif subtype == 1:  # cyst: water, homogeneous
      delta = rng.uniform(0.0, 20.0) - level + 2.0 * fine
    elif subtype == 2:  # metastasis: dark core, continuous brighter rim (target sign)
      core, rim = rng.uniform(-70.0, -40.0), rng.uniform(-15.0, 10.0)
      delta = core + (rim - core) * smoothstep(rho, rng.uniform(0.45, 0.7), 0.95) + 5.0 * fine
    elif subtype == 3:  # hemangioma: dark core, discontinuous peripheral nodules
      count = int(rng.integers(4, 9))
      directions = _unit_vectors(rng, count, planar)
      positions = directions * rng.uniform(0.7, 0.9, (count, 1))
      widths = np.maximum(rng.uniform(0.14, 0.24, count), 0.9 / radius_px)
      # In the lobulated frame, so the nodules follow the margin.
      lobulated = [u * rho for u in unit]
      nodules = sum(
        np.exp(-sum(np.square(lobulated[k] - p[k]) for k in range(3)) / (2.0 * s * s))
        for p, s in zip(positions, widths, strict=True)
      )
      core = rng.uniform(-75.0, -45.0)
      delta = core + (rng.uniform(20.0, 60.0) - core) * np.clip(nodules, 0.0, 1.0) + 3.0 * fine
    else:  # icc: moderately hypo, faint fibrous strands, blurred spiculated margin
      ridges = self._noise(rng, beta=3.0, min_wavelength=3.0, max_wavelength=10.0)
      strands = np.exp(-np.square(ridges / 0.3))
      rim = np.exp(-np.square((rho - 0.8) / 0.2))
      delta = rng.uniform(-55.0, -32.0) + rng.uniform(8.0, 20.0) * strands + 4.0 * fine
      delta = delta + rng.uniform(5.0, 20.0) * rim

    width = min(edge_px / radius_px, 0.45)
    presence = (1.0 - smoothstep(rho, 1.0 - width, 1.0 + width)) * liver_soft
    _paint(image, presence, level + delta)
    return (rho < 1.0) & liver


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


def _paint(image: np.ndarray, weight: np.ndarray, value) -> None:
  """In place: `image ← image · (1 − weight) + value · weight` (painter's algorithm)."""
  image *= 1.0 - weight
  image += np.asarray(value, np.float32) * weight


def _ellipsoid_distance(coords, centre, axes, angle: float = 0.0) -> np.ndarray:
  """Approximate signed distance (body units) to an ellipse(oid), negative inside.

  Args:
    coords: `(y, x, z)` broadcastable arrays.
    centre: `(cy, cx)` or `(cy, cx, cz)`.
    axes: `(ay, ax)` (a cylinder along z) or `(ay, ax, az)` semi-axes.
    angle: in-plane rotation, radians.

  Returns:
    `(ρ − 1) · min(ay, ax)` where ρ is the ellipsoidal radius: exact on the minor axis, close
    enough elsewhere for one-pixel anti-aliasing and layer thicknesses.
  """
  y, x, z = coords
  dy, dx = y - np.float32(centre[0]), x - np.float32(centre[1])
  if angle:
    cos, sin = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    dy, dx = cos * dy + sin * dx, cos * dx - sin * dy
  q = np.square(dy / np.float32(axes[0])) + np.square(dx / np.float32(axes[1]))
  if len(axes) == 3:
    q = q + np.square((z - np.float32(centre[2])) / np.float32(axes[2]))
  return ((np.sqrt(q) - 1.0) * np.float32(min(axes[0], axes[1]))).astype(np.float32)


def _smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
  """Polynomial smooth minimum of two signed distances (a blended union of two shapes)."""
  h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
  return b + (a - b) * h - k * h * (1.0 - h)


def _directions(coords, centre, axes) -> list[np.ndarray]:
  """Unit direction from `centre` in the frame scaled by `axes` (3 components)."""
  w = [(c - np.float32(c0)) / np.float32(a) for c, c0, a in zip(coords, centre, axes, strict=True)]
  norm = np.sqrt(sum(np.square(v) for v in w))
  return [v / np.maximum(norm, 1e-6) for v in w]


def _unit_vectors(rng: np.random.Generator, count: int, planar: bool) -> np.ndarray:
  """`[count, 3]` random unit vectors (z component 0 when `planar`)."""
  v = rng.standard_normal((count, 3))
  if planar:
    v[:, 2] = 0.0
  return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)


def _bumps(unit, directions: np.ndarray, amplitudes: np.ndarray, sharpness: np.ndarray):
  """Σ_j a_j · exp(κ_j (u · v_j − 1)): radial lobes (small κ) or spikes (large κ) on a shape."""
  total = np.zeros(np.broadcast_shapes(*(np.shape(u) for u in unit)), np.float32)
  for v, a, kappa in zip(directions, amplitudes, sharpness, strict=True):
    cosine = sum(np.float32(v[k]) * unit[k] for k in range(3))
    total += np.float32(a) * np.exp(np.float32(kappa) * (cosine - 1.0))
  return total


def _random_rotation(rng: np.random.Generator, planar: bool) -> np.ndarray:
  """A `[3, 3]` rotation: about z when `planar`, else uniformly random."""
  if planar:
    angle = rng.uniform(0.0, 2.0 * math.pi)
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
  q, r = np.linalg.qr(rng.standard_normal((3, 3)))
  q = q * np.sign(np.diag(r))
  return q if np.linalg.det(q) > 0 else -q
