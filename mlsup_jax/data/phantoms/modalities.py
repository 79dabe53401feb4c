"""Other modalities and anatomies as grey images: inter-class OOD for radiograph detectors (S6.7).

CVAD's inter-class OOD sets are whole other datasets (birds, skin lesions, IVC filters) shown to
a detector trained on chest radiographs. These phantoms play that role without downloads: each
is rendered at the radiograph phantom's size and channel count (`[S, S, 1]` in [0, 1]) so that
only the content differs.

* `ct`: an abdominal CT slice (`AbdomenPhantomSource`), soft-tissue window (level 40 HU,
  width 400 HU), resized to S when S is not a size the abdomen phantom supports;
* `mr_brain`: an axial brain MR slice: scalp, skull, CSF, folded cortex (grey matter) around
  white matter, lateral ventricles, deep grey nuclei, the falx; T1- or T2-like contrast, a
  smooth bias field and Rician noise;
* `ultrasound`: a fan-shaped sector (curved probe at the top) of laterally elongated speckle
  over layered echogenic tissue, bright interfaces, anechoic cysts or vessels with posterior
  enhancement, depth attenuation and log compression;
* `dermoscopy`: a pigmented skin lesion (irregular border, pigment network, globules) on skin
  texture with hairs and sometimes the dermatoscope's circular vignette, rendered in RGB and
  converted to grey (BT.601 luma).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mlsup_jax.data.phantoms.abdomen import AbdomenPhantomSource
from mlsup_jax.data.phantoms.curves import random_walk_curve, rasterize_curve, render_gaussian_blobs
from mlsup_jax.data.phantoms.source_base import PhantomSource
from mlsup_jax.data.phantoms.textures import (
  fractal_noise,
  gaussian_blur,
  smooth_random_field,
  smoothstep,
)
from mlsup_jax.data.sources.readers.class_folder import resize_image

MODALITY_NAMES = ("ct", "mr_brain", "ultrasound", "dermoscopy")
MIN_IMAGE_SIZE = 32
# The abdominal soft-tissue window (as `transforms.CtWindow(40, 400)`).
CT_LEVEL, CT_WIDTH = 40.0, 400.0
# Memory for cached cases (float32 image: 4 bytes a pixel).
CACHE_BYTES = 128 * 2**20
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class ModalityPhantomSource(PhantomSource):
  """Synthetic images of other modalities (CT, brain MR, ultrasound, dermoscopy) in [0, 1].

  Example: `image: [S, S, 1]` float32 in [0, 1] and `class_id: []` int32, the index of the case's
  modality in `MODALITY_NAMES`.

  Args:
    split: "train", "val" or "test"; each split draws disjoint cases.
    num_cases: number of cases.
    seed: non-negative base seed.
    modality: a name in `MODALITY_NAMES`, or a sequence of names: case i is then of modality
      `modality[i % len(modality)]`.
    image_size: S, ≥ 32.
    cache_size: maximum number of cached cases; None: as many as fit in 128 MiB.

  Attributes:
    modalities: the modality names, in the order cases cycle through them.
    class_ids: `[num_cases]` int32, the `MODALITY_NAMES` index of every case (known without
      rendering).
    class_names: `MODALITY_NAMES`.

  Raises:
    ValueError: on an unknown modality, an empty sequence, or an invalid split, count, seed or
      size.
  """

  def __init__(
    self,
    split: str = "train",
    num_cases: int = 64,
    seed: int = 0,
    modality: str | Sequence[str] = "ct",
    image_size: int = 64,
    cache_size: int | None = None,
  ):
    modalities = (modality,) if isinstance(modality, str) else tuple(modality)
    unknown = [m for m in modalities if m not in MODALITY_NAMES]
    if not modalities or unknown:
      raise ValueError(
        f"modality must be one of {', '.join(MODALITY_NAMES)} (or a non-empty sequence of "
        f"them), got {modality!r}."
      )
    if int(image_size) < MIN_IMAGE_SIZE:
      raise ValueError(f"image_size must be ≥ {MIN_IMAGE_SIZE}, got {image_size}.")
    if cache_size is None:
      cache_size = max(1, min(int(num_cases), CACHE_BYTES // (4 * int(image_size) ** 2)))
    super().__init__(split, num_cases, seed, cache_size=cache_size)
    self.image_size = int(image_size)
    self.modalities = modalities
    self.class_names = MODALITY_NAMES
    cycle = np.asarray([MODALITY_NAMES.index(m) for m in modalities], np.int32)
    self.class_ids = cycle[np.arange(self.num_cases) % len(cycle)]
    self.class_ids.flags.writeable = False
    q = ((np.arange(self.image_size, dtype=np.float32) + 0.5) / self.image_size) * 2.0 - 1.0
    self._q_rows, self._q_cols = np.meshgrid(q, q, indexing="ij")
    self._ct = None
    if "ct" in modalities:
      # The abdomen phantom needs a multiple of 16; render at the next one and resize.
      ct_size = max(32, -(-self.image_size // 16) * 16)
      self._ct = AbdomenPhantomSource(split, 1, image_size=ct_size, seed=self.seed)

  def generate(self, rng: np.random.Generator, index: int) -> dict[str, np.ndarray]:
    """Case `index` (see the class docstring for the keys)."""
    class_id = int(self.class_ids[index])
    render = {
      "ct": self._render_ct,
      "mr_brain": self._render_mr_brain,
      "ultrasound": self._render_ultrasound,
      "dermoscopy": self._render_dermoscopy,
    }[MODALITY_NAMES[class_id]]
    image = np.clip(render(rng, index), 0.0, 1.0).astype(np.float32)
    return {"image": image[..., None], "class_id": np.asarray(class_id, np.int32)}

  def _pose(self, rng, max_angle: float, zoom: tuple[float, float], max_shift: float):
    """Rotated, zoomed and shifted `(rows, cols)` coordinates (the image spans about ±1)."""
    angle = rng.uniform(-max_angle, max_angle)
    scale = rng.uniform(*zoom)
    shift = rng.uniform(-max_shift, max_shift, 2)
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    rows = cos * self._q_rows - sin * self._q_cols + np.float32(shift[0])
    cols = sin * self._q_rows + cos * self._q_cols + np.float32(shift[1])
    return rows.astype(np.float32), cols.astype(np.float32), 2.0 * scale / self.image_size

  # ---------------------------------------------------------------------------------- CT

  def _render_ct(self, rng, index) -> np.ndarray:
    """An abdominal CT slice in the soft-tissue window; `[S, S]`."""
    hu = self._ct.generate(rng, index)["image"]
    window = np.clip((hu - (CT_LEVEL - CT_WIDTH / 2.0)) / CT_WIDTH, 0.0, 1.0)
    return resize_image(window, self.image_size)[..., 0]

  # ---------------------------------------------------------------------------- brain MR

  def _render_mr_brain(self, rng, index) -> np.ndarray:
    """An axial brain MR slice (T1- or T2-like); `[S, S]`."""
    del index
    size = self.image_size
    y, x, px = self._pose(rng, 0.15, (0.95, 1.1), 0.05)

    def inside(distance):
      return np.clip(0.5 - distance / px, 0.0, 1.0).astype(np.float32)

    # Head: an ellipse, longer front to back; layers by (approximate) depth below the surface.
    ry, rx = rng.uniform(0.84, 0.92), rng.uniform(0.68, 0.78)
    depth = (1.0 - np.sqrt(np.square(y / ry) + np.square(x / rx))) * min(ry, rx)
    scalp, skull, csf = rng.uniform(0.03, 0.05), rng.uniform(0.035, 0.055), rng.uniform(0.01, 0.025)
    brain_depth = depth - scalp - skull - csf
    # Cortex: grey matter of varying thickness (gyri) with CSF-filled sulci cutting into it.
    gyri = fractal_noise(rng, (size, size), beta=2.5, max_wavelength=size / 3.0)
    sulci = fractal_noise(rng, (size, size), beta=2.2, max_wavelength=size / 4.0)
    cortex = rng.uniform(0.07, 0.1) * (1.0 + 0.45 * gyri)
    white = inside(cortex - brain_depth)
    sulcus = (1.0 - smoothstep(np.abs(sulci), 0.1, 0.3)) * (1.0 - white) * inside(-brain_depth)
    # Lateral ventricles (a butterfly), deep grey nuclei, the falx.
    atrophy = rng.uniform(0.8, 1.4)
    ventricles = np.zeros((size, size), np.float32)
    deep_grey = np.zeros((size, size), np.float32)
    vy = rng.uniform(-0.1, 0.0)
    for side in (-1.0, 1.0):
      angle = side * rng.uniform(0.15, 0.35)
      dy, dx = y - vy, x - side * rng.uniform(0.06, 0.09)
      along = math.cos(angle) * dy + math.sin(angle) * dx
      across = math.cos(angle) * dx - math.sin(angle) * dy
      r = np.hypot(along / (0.26 * atrophy), across / (0.045 * atrophy))
      ventricles = np.maximum(ventricles, inside((r - 1.0) * 0.045 * atrophy))
      r = np.hypot((y - vy - 0.02) / 0.14, (x - side * 0.2) / 0.07)
      deep_grey = np.maximum(deep_grey, inside((r - 1.0) * 0.07))
    falx = inside(np.abs(x) - 0.008) * smoothstep(np.abs(y - vy), 0.25, 0.35)

    t1 = rng.uniform() < 0.5
    jitter = rng.uniform(-0.05, 0.05, 5)
    # Signal of scalp, skull, CSF, grey and white matter (T1: fat bright, CSF dark; T2: CSF bright).
    levels = (0.85, 0.08, 0.12, 0.45, 0.7) if t1 else (0.55, 0.05, 0.95, 0.6, 0.4)
    levels = [max(level + j, 0.0) for level, j in zip(levels, jitter, strict=True)]
    image = levels[0] * inside(-depth)
    image = _mix(image, inside(scalp - depth), levels[1])
    image = _mix(image, inside(scalp + skull - depth), levels[2])
    image = _mix(image, inside(-brain_depth), levels[3])
    image = _mix(image, white, levels[4])
    image = _mix(image, deep_grey * inside(-brain_depth), levels[3] + 0.03)
    image = _mix(image, np.maximum(sulcus, falx * inside(-brain_depth)), levels[2])
    image = _mix(image, ventricles, levels[2])
    image *= np.exp(0.12 * smooth_random_field(rng, (size, size), size / 5.0))  # bias field
    image = gaussian_blur(image, 0.5 * size / 64.0)
    sigma = rng.uniform(0.02, 0.05)
    noise = rng.standard_normal((2, size, size), dtype=np.float32) * np.float32(sigma)
    return np.hypot(image + noise[0], noise[1])  # Rician magnitude noise

  # ------------------------------------------------------------------------------- ultrasound

  def _render_ultrasound(self, rng, index) -> np.ndarray:
    """A curved-array B-mode sector; `[S, S]`."""
    del index
    size = self.image_size
    y, x, px = self._pose(rng, 0.03, (0.95, 1.05), 0.03)
    apex_y = -1.0 - rng.uniform(0.02, 0.15)
    r, phi = np.hypot(y - apex_y, x), np.arctan2(x, y - apex_y)
    half_angle = rng.uniform(0.5, 0.75)
    r_min, r_max = rng.uniform(0.08, 0.15), rng.uniform(1.75, 2.05)
    sector = (
      np.clip((r - r_min) / px + 0.5, 0.0, 1.0)
      * np.clip((r_max - r) / px + 0.5, 0.0, 1.0)
      * np.clip((half_angle - np.abs(phi)) * r / px + 0.5, 0.0, 1.0)
    )
    # Echogenicity: layered tissue, bright interfaces, anechoic structures.
    layers = fractal_noise(rng, (size, size), beta=3.0, stretch=(1.0, 3.0))
    echo = rng.uniform(0.35, 0.5) * np.exp(0.35 * layers)
    for _ in range(int(rng.integers(1, 4))):
      depth = rng.uniform(0.3, 1.6)
      wave = depth + rng.uniform(0.02, 0.1) * np.sin(
        rng.uniform(2.0, 6.0) * phi + rng.uniform(0, 6)
      )
      echo += rng.uniform(0.6, 1.2) * np.exp(-np.square((r - wave) / rng.uniform(0.015, 0.03)))
    enhancement = np.ones((size, size), np.float32)
    for _ in range(int(rng.integers(1, 4))):
      cr, cphi = rng.uniform(0.5, 1.5), rng.uniform(-0.6, 0.6) * half_angle
      cy, cx = apex_y + cr * math.cos(cphi), cr * math.sin(cphi)
      radius = rng.uniform(0.08, 0.22)
      cyst = np.hypot((y - cy) / radius, (x - cx) / (radius * rng.uniform(0.8, 1.6)))
      inside_cyst = 1.0 - smoothstep(cyst, 0.9, 1.05)
      echo = echo * (1.0 - inside_cyst) + rng.uniform(0.01, 0.06) * inside_cyst
      # Posterior acoustic enhancement: brighter behind the fluid, in the same beam directions.
      shadow_cone = 1.0 - smoothstep(np.abs(phi - cphi) * cr, 0.7 * radius, radius)
      enhancement += 0.4 * shadow_cone * smoothstep(r, cr, cr + radius)
    # Speckle: the magnitude of a complex Gaussian field, elongated across the beam.
    field = rng.standard_normal((2, size, size), dtype=np.float32)
    field = np.stack([gaussian_blur(f, (0.5, 1.3) if size <= 64 else (0.8, 2.0)) for f in field])
    speckle = np.hypot(field[0], field[1])
    speckle /= max(float(speckle.mean()), 1e-6)
    attenuation = np.exp(-rng.uniform(0.2, 0.6) * r)
    envelope = echo * enhancement * speckle * attenuation
    compression = rng.uniform(5.0, 20.0)
    image = np.log1p(compression * envelope) / math.log1p(compression * 2.5)
    return image * sector

  # ------------------------------------------------------------------------------ dermoscopy

  def _render_dermoscopy(self, rng, index) -> np.ndarray:
    """A pigmented skin lesion (RGB → grey); `[S, S]`."""
    del index
    size = self.image_size
    y, x, px = self._pose(rng, math.pi, (0.95, 1.05), 0.05)
    skin_colour = np.array([0.86, 0.66, 0.56]) * rng.uniform(0.8, 1.05)
    lesion_colour = np.array([0.45, 0.28, 0.18]) * rng.uniform(0.45, 1.0)
    texture = fractal_noise(rng, (size, size), beta=2.5)
    skin_lines = np.exp(
      -np.square(fractal_noise(rng, (size, size), beta=2.8, stretch=(1, 2)) / 0.2)
    )
    skin = 1.0 + 0.05 * texture - 0.06 * skin_lines
    # Lesion: an irregular blob, darker in the centre, with a pigment network and globules.
    cy, cx = rng.uniform(-0.15, 0.15, 2)
    radius = rng.uniform(0.25, 0.55)
    rho = np.hypot(y - cy, (x - cx) / rng.uniform(0.7, 1.0)) / radius
    border = fractal_noise(rng, (size, size), beta=2.6)
    lesion = smoothstep(1.0 - rho + 0.25 * border, 0.0, rng.uniform(0.05, 0.25))
    network = np.exp(-np.square(fractal_noise(rng, (size, size), beta=2.0) / 0.25))
    darkness = 1.0 - 0.3 * smoothstep(1.0 - rho, 0.2, 0.8) - 0.25 * network
    count = int(rng.integers(0, 12))
    angles, radii = rng.uniform(0, 2 * math.pi, count), radius * np.sqrt(rng.uniform(0, 0.8, count))
    centres = (
      np.stack([cy + radii * np.cos(angles), cx + radii * np.sin(angles)], axis=1) + 1.0
    ) * (size / 2.0) - 0.5
    globules = render_gaussian_blobs(
      (size, size), centres, rng.uniform(0.6, 1.5, count) * size / 64.0, np.full(count, 0.4)
    )
    darkness = np.clip(darkness - globules, 0.1, 1.0)
    colour = (skin[..., None] * skin_colour) * (1.0 - lesion[..., None]) + (
      darkness[..., None] * lesion_colour
    ) * lesion[..., None]
    # Hairs: dark thin curves across the field.
    hair = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(0, 6))):
      start = rng.uniform(0, size, 2)
      curve = random_walk_curve(
        rng, start, rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 1.5) * size, curvature_std=0.02
      )
      soft, _ = rasterize_curve(curve, rng.uniform(0.7, 1.5) * size / 64.0, (size, size))
      hair = np.maximum(hair, soft)
    colour = colour * (1.0 - 0.8 * hair[..., None])
    grey = colour.astype(np.float32) @ _LUMA
    grey *= 1.0 + rng.uniform(-0.1, 0.1) * self._q_rows  # uneven illumination
    if rng.uniform() < 0.5:  # the dermatoscope's circular field of view
      edge = rng.uniform(0.95, 1.25)
      grey *= 1.0 - smoothstep(np.hypot(self._q_rows, self._q_cols), edge - 0.08, edge)
    grey = gaussian_blur(grey, 0.5 * size / 64.0)
    return grey + rng.normal(0.0, 0.01, (size, size)).astype(np.float32)


def _mix(image: np.ndarray, weight: np.ndarray, value) -> np.ndarray:
  """`image · (1 − weight) + value · weight` (the painter's algorithm)."""
  return image * (1.0 - weight) + np.float32(value) * weight
