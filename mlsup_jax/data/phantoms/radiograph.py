"""Frontal chest-radiograph-like images with subtle findings (TEND / CVAD intra-class OOD, S5.7).

Each case is a posterior–anterior chest radiograph in [0, 1] (bright = dense; patient's right on
the image left), built as a projected attenuation map and then "exposed":

* the torso (an elliptic cylinder under sloping shoulders) with a neck, humeral heads, sometimes
  breast shadows, and soft-tissue texture;
* two lungs (air, so dark): superellipses cut by the diaphragm domes, with sharp costophrenic
  angles; the right dome sits higher; lung markings (a ridged fractal network, denser near the
  hila) and hilar vessels;
* the mediastinum (no air, so bright) with the aortic knob, the trachea (a dark band down to the
  carina), the heart (a tilted ellipse bulging to the patient's left), sometimes a gastric bubble
  under the left dome;
* bones: the spine (with vertebral banding), ten curved posterior ribs and six fainter anterior
  ribs a side (hollow-cylinder profiles), clavicles;
* acquisition: a random pose (rotation, zoom, shift), a random exposure (beam hardness, window,
  gamma, a heel-effect gradient), detector blur and noise.

Habitus, inspiration depth, heart size, bone density and exposure all vary, so *normal* images
vary a lot. The abnormal classes are deliberately subtle (intra-class OOD): the anatomy is
unchanged, only a small region differs, and global intensity statistics do not separate them
from normal images (the tests measure AUROC < 0.65 for the image mean and std):

* opacity (class 1): one (sometimes two) patchy, fractal-edged consolidation(s) in a lung that
  replace 35–70% of the air locally (pneumonia-like);
* nodule (2): one to three small round dense nodules inside the lungs (radius 1–2.5 px at 64²);
* effusion (3): fluid fills the base of one or both lungs up to a meniscus that rises laterally,
  blunting the costophrenic angle;
* cardiomegaly (4): the heart is 18–35% wider (the normal cardiothoracic ratio range is wide,
  so the two overlap as in practice).

A case's class comes from its own random stream (`source_base.class_stream`), so it is known without
rendering; the anatomy and acquisition come from streams spawned from `case_rng` that do not
depend on the class, so `render(rng, 0)` gives the normal "twin" of any abnormal case.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mlsup_jax.data.phantoms.curves import projected_tube_profile
from mlsup_jax.data.phantoms.source_base import LabelledPhantomSource, class_stream
from mlsup_jax.data.phantoms.textures import fractal_noise, gaussian_blur, smoothstep

__all__ = ["CLASS_NAMES", "DEFAULT_CLASS_WEIGHTS", "ChestRadiographPhantomSource", "class_stream"]

CLASS_NAMES = ("normal", "opacity", "nodule", "effusion", "cardiomegaly")
# Normal is the largest class, as in RSNA pneumonia (S5.7: 8,851 normal of 30,227).
DEFAULT_CLASS_WEIGHTS = (0.4, 0.15, 0.15, 0.15, 0.15)
NUM_POSTERIOR_RIBS = 10
NUM_ANTERIOR_RIBS = 6


class ChestRadiographPhantomSource(LabelledPhantomSource):
  """Synthetic frontal chest radiographs: normal, or with one subtle finding.

  Example: `image: [S, S, 1]` float32 in [0, 1] (`S = image_size`) and `class_id: []` int32, an
  index into `CLASS_NAMES` (0 normal, 1 opacity, 2 nodule, 3 effusion, 4 cardiomegaly).

  Args:
    split: "train", "val" or "test"; each split draws disjoint cases.
    num_cases: number of cases in the split.
    seed: non-negative base seed.
    image_size: S, ≥ 32.
    class_weights: relative frequency of each class of `CLASS_NAMES` (normalised; zeros allowed,
      not all zero). Default: 40% normal, 15% each finding.
    cache_size: maximum number of cached cases; None: as many as fit in 128 MiB.

  Attributes:
    class_ids: `[num_cases]` int32, the class of every case (known without rendering).
    class_names: `CLASS_NAMES`.

  Raises:
    ValueError: on an unknown split or an invalid count, seed, size or weights.
  """

  CLASS_NAMES = CLASS_NAMES

  def __init__(
    self,
    split: str = "train",
    num_cases: int = 64,
    seed: int = 0,
    image_size: int = 64,
    class_weights: Sequence[float] = DEFAULT_CLASS_WEIGHTS,
    cache_size: int | None = None,
  ):
    super().__init__(split, num_cases, seed, image_size, class_weights, cache_size)

  def render(self, rng: np.random.Generator, class_id: int) -> np.ndarray:
    """Renders one radiograph of class `class_id` from `rng`.

    The anatomy, the finding and the acquisition use three streams spawned from `rng`, so a
    fresh `case_rng(seed, split, index)` with `class_id=0` gives case `index`'s normal twin:
    the same patient and exposure without the finding.

    Returns:
      `[S, S]` float32 in [0, 1].
    """
    class_id = self.check_class_id(class_id)
    anatomy_rng, finding_rng, acquisition_rng = rng.spawn(3)
    finding = CLASS_NAMES[int(class_id)]
    heart_scale = finding_rng.uniform(1.18, 1.35) if finding == "cardiomegaly" else 1.0
    anatomy = self._anatomy(anatomy_rng, heart_scale)
    if finding == "opacity":
      self._opacity(finding_rng, anatomy)
    elif finding == "nodule":
      self._nodules(finding_rng, anatomy)
    elif finding == "effusion":
      self._effusion(finding_rng, anatomy)
    attenuation = anatomy["tissue"] - anatomy["air"] + anatomy["dense"]
    return expose_radiograph(acquisition_rng, attenuation, self._q_rows, self._q_cols)

  def _anatomy(self, rng: np.random.Generator, heart_scale: float) -> dict:
    """Paints the normal anatomy as projected thickness maps (body units: the image is ±1).

    Returns:
      A dict with `tissue`, `air` and `dense` (bone and other extra density) `[S, S]` float32
      maps (attenuation = tissue − air + dense), the per-side lung masks `lungs: [2, S, S]`
      (image left = patient right first), and the coordinates and geometry the findings need.
    """
    size = self.image_size
    # Pose: rotation, zoom (field of view) and shift.
    angle = rng.uniform(-0.06, 0.06)
    zoom = rng.uniform(0.95, 1.1)
    shift_y, shift_x = rng.uniform(-0.05, 0.05), rng.uniform(-0.04, 0.04)
    cos, sin = zoom * math.cos(angle), zoom * math.sin(angle)
    y = (cos * self._q_rows - sin * self._q_cols + np.float32(shift_y)).astype(np.float32)
    x = (sin * self._q_rows + cos * self._q_cols + np.float32(shift_x)).astype(np.float32)
    px = 2.0 * zoom / size  # one pixel in body units

    def inside(distance):
      """Anti-aliased coverage of the region where `distance` (body units) is negative."""
      return np.clip(0.5 - distance / px, 0.0, 1.0).astype(np.float32)

    # Habitus and inspiration.
    thorax = rng.uniform(0.76, 0.9)  # half-width of the rib cage (lungs' lateral extent)
    body = thorax + rng.uniform(0.08, 0.18)
    apex = rng.uniform(-0.84, -0.72)
    costophrenic = rng.uniform(0.48, 0.7)  # lowest point of the (left) lung
    mid = rng.uniform(-0.03, 0.03)  # midline

    # Torso: an elliptic cylinder under sloping shoulders, plus the neck.
    neck = rng.uniform(0.16, 0.22)
    shoulder = -0.98 + rng.uniform(-0.04, 0.06) + 0.2 * np.square(x / body)
    torso_cover = inside(np.maximum(np.abs(x) - body, shoulder - y))
    torso_depth = np.sqrt(np.clip(1.0 - np.square(x / body), 0.0, 1.0))
    neck_cover = inside(np.abs(x - mid) - neck) * 0.55 * inside(y - shoulder - 0.05)
    tissue = np.maximum(torso_cover * torso_depth, neck_cover)
    tissue *= 1.0 + 0.03 * fractal_noise(rng, (size, size), beta=3.0)
    dense = np.zeros((size, size), np.float32)
    # Humeral heads at the top corners.
    head_y = -0.98 + 0.2 * (thorax / body) ** 2 + rng.uniform(0.08, 0.16)
    for side in (-1.0, 1.0):
      radius = rng.uniform(0.12, 0.16)
      distance = np.sqrt(np.square(y - head_y) + np.square(x - side * (body - 0.02)))
      dense += rng.uniform(0.1, 0.18) * projected_tube_profile(distance, radius, 0.7 * radius)
    # Breast shadows (sometimes): soft tissue over the lower lungs.
    if rng.uniform() < 0.35:
      gain = rng.uniform(0.06, 0.14)
      for side in (-1.0, 1.0):
        r = np.sqrt(
          np.square((y - costophrenic + 0.05) / 0.3) + np.square((side * x - 0.55 * thorax) / 0.4)
        )
        tissue += gain * np.sqrt(np.clip(1.0 - r * r, 0.0, 1.0)) * smoothstep(y, -0.1, 0.15)

    # Lungs: superellipses cut by the diaphragm domes (right dome higher).
    lungs, air = [], np.zeros((size, size), np.float32)
    geometry = []
    air_gain = rng.uniform(0.55, 0.72)
    for side in (-1.0, 1.0):
      u = side * (x - mid)  # lateral coordinate, positive outwards
      centre, half_width = thorax * rng.uniform(0.52, 0.58), thorax * rng.uniform(0.44, 0.48)
      bottom = costophrenic - (rng.uniform(0.02, 0.07) if side < 0 else 0.0)
      top = apex + rng.uniform(-0.02, 0.02)
      centre_y, half_height = (top + bottom + 0.3) / 2.0, (bottom + 0.3 - top) / 2.0
      power = rng.uniform(2.2, 3.0)
      r = np.abs((u - centre) / half_width) ** power + np.square((y - centre_y) / half_height)
      dome_height, dome_peak = rng.uniform(0.1, 0.2), centre - rng.uniform(0.0, 0.1)
      dome = bottom - dome_height * np.exp(-np.square((u - dome_peak) / (0.75 * half_width)))
      lung = inside((np.sqrt(r) - 1.0) * half_width) * inside(y - dome)
      depth = 0.55 + 0.45 * np.sqrt(np.clip(1.0 - np.square((u - centre) / half_width), 0.0, 1.0))
      lungs.append(lung)
      air += air_gain * lung * depth
      geometry.append(
        {"centre": centre, "half_width": half_width, "bottom": bottom, "top": top, "side": side}
      )
    lungs = np.stack(lungs)
    lung_any = np.clip(lungs.sum(0), 0.0, 1.0)

    # Lung markings: a ridged fractal network, denser near the hila, plus hilar vessels.
    hilum_y = rng.uniform(-0.12, 0.0)
    hilum_d = np.minimum(*(np.hypot(y - hilum_y, x - mid - s * thorax * 0.28) for s in (-1.0, 1.0)))
    ridges = np.exp(-np.square(fractal_noise(rng, (size, size), beta=2.6) / 0.35))
    markings = rng.uniform(0.08, 0.14) * ridges * (0.3 + np.exp(-hilum_d / 0.3))
    markings += rng.uniform(0.1, 0.2) * np.exp(-np.square(hilum_d / 0.08))
    dense += markings * lung_any

    # Mediastinum (no air): a central band widening downwards, and the aortic knob.
    width = rng.uniform(0.09, 0.13) + 0.04 * smoothstep(y, -0.6, 0.0)
    knob_y, knob_r = rng.uniform(-0.45, -0.32), rng.uniform(0.05, 0.07)
    knob = inside(np.hypot(y - knob_y, x - mid - width + 0.01) - knob_r)
    mediastinum = np.maximum(inside(np.abs(x - mid) - width), knob)
    # Heart: a tilted ellipse bulging to the patient's left (image right).
    ctr = rng.uniform(0.36, 0.47) * heart_scale  # cardiothoracic ratio
    heart_a = ctr * thorax
    heart_b = heart_a * rng.uniform(0.72, 0.88) / math.sqrt(heart_scale)
    # About a third of the heart lies right of the midline (image left).
    heart_x = mid + heart_a * rng.uniform(0.25, 0.4)
    heart_y = costophrenic - 0.6 * heart_b - 0.05 + rng.uniform(-0.04, 0.04)
    tilt = rng.uniform(0.2, 0.5)
    dy, dx = y - heart_y, x - heart_x
    # The long axis runs from the upper right heart border down to the apex (image right).
    along = math.cos(tilt) * dx + math.sin(tilt) * dy
    across = -math.sin(tilt) * dx + math.cos(tilt) * dy
    heart_r = np.sqrt(np.square(along / heart_a) + np.square(across / heart_b))
    heart = inside((heart_r - 1.0) * heart_b)
    air *= (1.0 - mediastinum) * (1.0 - 0.85 * heart)
    lungs *= (1.0 - mediastinum) * (1.0 - 0.85 * heart)
    dense += 0.08 * heart * np.sqrt(np.clip(1.0 - heart_r * heart_r, 0.0, 1.0))
    # Trachea (dark) down to the carina; gastric bubble under the left dome (sometimes).
    carina = rng.uniform(-0.35, -0.25)
    air += rng.uniform(0.2, 0.3) * inside(np.abs(x - mid) - 0.035) * inside(y - carina) * tissue
    if rng.uniform() < 0.6:
      left = geometry[1]
      bubble_y, bubble_x = left["bottom"] + rng.uniform(0.04, 0.1), mid + left["centre"]
      bubble = np.hypot((y - bubble_y) / 0.06, (x - bubble_x) / rng.uniform(0.08, 0.13))
      air += rng.uniform(0.2, 0.35) * inside((bubble - 1.0) * 0.06)

    # Spine with vertebral banding (discs darker), behind everything.
    period, phase = rng.uniform(0.1, 0.13), rng.uniform(0.0, 1.0)
    banding = 0.8 + 0.2 * np.cos(2.0 * math.pi * (y / period + phase))
    bone_gain = rng.uniform(0.8, 1.2)  # bone density of this patient
    dense += bone_gain * 0.12 * inside(np.abs(x - mid) - 0.075) * banding * torso_cover
    # Ribs: curved hollow bands; posterior ribs rise then fall laterally, anterior ribs fall
    # medially and fade where the costal cartilage starts. Ribs never overlap (their radius is
    # well below the spacing), so each pixel only needs its nearest rib of each family.
    spacing = (costophrenic - 0.12 - apex - 0.06) / (NUM_POSTERIOR_RIBS - 1)
    curvature = rng.uniform(0.85, 1.15)
    starts = apex + 0.06 + spacing * np.arange(NUM_POSTERIOR_RIBS)
    starts = starts + rng.uniform(-0.015, 0.015, NUM_POSTERIOR_RIBS)
    span = thorax - 0.02  # medial to lateral end of a rib, in u
    for side in (-1.0, 1.0):
      u = side * (x - mid)
      v = (u - 0.07) / span
      extent = smoothstep(v, -0.03, 0.04) * (1.0 - smoothstep(v, 0.95, 1.03))
      shape = curvature * thorax * (-0.25 * v + 0.7 * v * v)
      slope = curvature * thorax * (-0.25 + 1.4 * v) / span
      radius = 0.026 + 0.012 * np.clip(v, 0.0, 1.0)
      ribs = _rib_family(y - shape, starts, slope, radius, 0.55 * radius) * extent
      shape = 0.4 * thorax * np.square(1.0 - v)
      slope = -0.8 * thorax * (1.0 - v) / span
      fade = smoothstep(v, 0.3, 0.6) * (1.0 - smoothstep(v, 0.95, 1.03))
      anterior = starts[1 : 1 + NUM_ANTERIOR_RIBS] + 0.12
      ribs += 0.45 * _rib_family(y - shape, anterior, slope, 0.035, 0.0) * fade
      # Clavicle: from the manubrium outwards and slightly up.
      w = np.clip((u - 0.08) / (0.6 * thorax), 0.0, 1.0)
      clavicle_y = apex + rng.uniform(0.02, 0.08) - 0.1 * w + 0.04 * np.sin(math.pi * w)
      clavicle_extent = smoothstep(u, 0.06, 0.1) * (1.0 - smoothstep(u, 0.66 * thorax, 0.72))
      clavicle = projected_tube_profile(np.abs(y - clavicle_y), 0.032) * clavicle_extent
      dense += bone_gain * (0.09 * ribs + 0.16 * clavicle) * torso_cover
    return {
      "tissue": tissue.astype(np.float32),
      "air": air.astype(np.float32),
      "dense": dense.astype(np.float32),
      "lungs": lungs.astype(np.float32),
      "y": y,
      "x": x,
      "px": px,
      "mid": mid,
      "geometry": geometry,
      "air_gain": air_gain,
    }

  def _lung_point(self, rng, anatomy, side: int, lower_bias: float) -> tuple[float, float]:
    """A random point (body units) well inside lung `side`, biased towards the lower zones."""
    lung = anatomy["lungs"][side]
    candidates = np.flatnonzero(lung > 0.95)
    if not len(candidates):
      candidates = np.flatnonzero(lung >= lung.max() * 0.5)
    weights = np.exp(lower_bias * anatomy["y"].ravel()[candidates])
    pick = candidates[rng.choice(len(candidates), p=weights / weights.sum())]
    return float(anatomy["y"].ravel()[pick]), float(anatomy["x"].ravel()[pick])

  def _opacity(self, rng, anatomy) -> None:
    """Patchy consolidation: fractal-edged patches replacing part of one lung's air."""
    size, y, x = self.image_size, anatomy["y"], anatomy["x"]
    side = int(rng.integers(2))
    count = 2 if rng.uniform() < 0.2 else 1
    patch = np.zeros((size, size), np.float32)
    for _ in range(count):
      cy, cx = self._lung_point(rng, anatomy, side, lower_bias=1.5)
      radius = rng.uniform(0.1, 0.2)
      rho = np.hypot(y - cy, (x - cx) / rng.uniform(0.8, 1.25)) / radius
      edge = fractal_noise(rng, (size, size), beta=2.4)
      patch = np.maximum(patch, smoothstep(1.0 - rho + 0.35 * edge, 0.0, 0.45))
    # Patchy: the density itself varies (air-filled alveoli next to consolidated ones).
    patch *= 0.75 + 0.25 * np.tanh(fractal_noise(rng, (size, size), beta=2.0))
    fill = rng.uniform(0.35, 0.7) * patch * anatomy["lungs"][side] * anatomy["air_gain"]
    anatomy["air"] -= np.minimum(fill, anatomy["air"])

  def _nodules(self, rng, anatomy) -> None:
    """One to three small round dense nodules inside the lungs."""
    y, x = anatomy["y"], anatomy["x"]
    for _ in range(int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15]))):
      cy, cx = self._lung_point(rng, anatomy, int(rng.integers(2)), lower_bias=0.0)
      radius = max(rng.uniform(0.035, 0.075), 1.2 * anatomy["px"])
      ball = projected_tube_profile(np.hypot(y - cy, x - cx), radius)  # a sphere seen end-on
      anatomy["dense"] += rng.uniform(0.12, 0.22) * ball

  def _effusion(self, rng, anatomy) -> None:
    """Pleural fluid at one or both lung bases, up to a meniscus rising laterally."""
    y, x = anatomy["y"], anatomy["x"]
    sides = [int(rng.integers(2))] if rng.uniform() < 0.7 else [0, 1]
    for side in sides:
      g = anatomy["geometry"][side]
      u = g["side"] * (x - anatomy["mid"])
      medial, lateral = g["centre"] - g["half_width"], g["centre"] + g["half_width"]
      rise = np.clip((u - medial) / (lateral - medial), 0.0, 1.0) ** 1.5
      height = rng.uniform(0.1, 0.25) * (g["bottom"] - g["top"]) / 1.3
      level = g["bottom"] - height * (0.35 + 0.65 * rise)
      fluid = smoothstep(y - level, 0.0, rng.uniform(0.03, 0.07)) * anatomy["lungs"][side]
      fill = rng.uniform(0.75, 0.95) * fluid * anatomy["air_gain"]
      anatomy["air"] -= np.minimum(fill, anatomy["air"])


def expose_radiograph(
  rng: np.random.Generator, attenuation: np.ndarray, q_rows: np.ndarray, q_cols: np.ndarray
) -> np.ndarray:
  """Attenuation → detector image: exposure curve, window, gamma, heel effect, blur, noise.

  Shared by the radiograph phantoms (chest, IVC filter), so they differ in content only.

  Args:
    rng: the acquisition stream (beam hardness, window, gamma, heel effect, blur, noise).
    attenuation: `[S, S]` projected attenuation (≈ 0 … 1.2; larger is denser).
    q_rows, q_cols: `[S, S]` pixel-centre coordinates in [−1, 1].

  Returns:
    `[S, S]` float32 in [0, 1] (bright = dense).
  """
  size = attenuation.shape[0]
  hardness = rng.uniform(1.4, 2.4)  # kVp: a harder beam flattens the contrast
  signal = (1.0 - np.exp(-hardness * np.maximum(attenuation, 0.0))) / (
    1.0 - math.exp(-hardness * 1.2)
  )
  heel = rng.uniform(-0.06, 0.06) * q_rows + rng.uniform(-0.04, 0.04) * q_cols
  signal = signal * (1.0 + heel)
  low, high = rng.uniform(-0.08, 0.12), rng.uniform(0.95, 1.2)
  image = np.clip((signal - low) / (high - low), 0.0, 1.0) ** rng.uniform(0.7, 1.4)
  image = gaussian_blur(image, rng.uniform(0.4, 0.8) * size / 64.0)
  noise = gaussian_blur(rng.standard_normal((size, size), dtype=np.float32), 0.5)
  noise *= np.float32(rng.uniform(0.008, 0.03) / max(float(noise.std()), 1e-6))
  return np.clip(image + noise, 0.0, 1.0).astype(np.float32)


def _rib_family(height: np.ndarray, starts: np.ndarray, slope, radius, inner_radius) -> np.ndarray:
  """Profiles of parallel ribs `height == starts[k]`, each pixel against its nearest rib only.

  Args:
    height: `[S, S]` the pixel's row minus the rib shape at its column (body units).
    starts: `[K]` increasing row offset of each rib.
    slope: `[S, S]` (or scalar) d(row)/d(col) of the ribs, to turn vertical into normal distance.
    radius: outer rib radius (broadcastable); inner_radius: the marrow's radius (0: solid).

  Returns:
    `[S, S]` float32 in [0, 1].
  """
  nearest = np.searchsorted((starts[1:] + starts[:-1]) / 2.0, height)
  offset = (height - starts[nearest]) / np.sqrt(1.0 + np.square(slope))
  return projected_tube_profile(offset, radius, inner_radius)
