"""Abdominal radiographs of inferior-vena-cava filters of eight designs (TEND's IVC setting, S5.7).

The thesis's strongest TEND result is on the IVC-filter dataset (Table 4.3: TEND 0.75–0.77 AUROC
against the AE's 0.44), whose classes are filter *models*: the same kind of object — a small
metal device of thin struts over the spine and bowel — in different geometric designs. ID is one
model (Option), OOD every other model of the same dataset (one-vs-rest), which Table 4.7 also
uses as CVAD's IVC intra-class OOD. This phantom reproduces that structure without downloads:

* background: an abdominal radiograph crop around the filter — soft tissue with texture, the
  lumbar spine to the image right of the cava (vertebral bodies with cortical rims and end
  plates, discs, pedicles, transverse processes), bowel gas and stool mottling;
* the device: struts (thin metal wires) in 3-D around the filter's axis, projected with a random
  pose — position, length, in-plane tilt, out-of-plane tilt (foreshortening) and spin about the
  axis, so the struts overlap differently in every image — plus metal hubs;
* acquisition: the chest phantom's exposure model (`radiograph.expose_radiograph`: beam
  hardness, window, gamma, heel effect, detector blur and noise).

The eight designs (`CLASS_NAMES`) follow the families of real filters; the device's class sets
only its geometry, never its size, pose, metal density or background:

0. `conical_hooked` (ID; Option-like): six struts flaring to a cone with outward barbs at their
   ends, a retrieval hook above the apex;
1. `straight_cone` (Greenfield-like): six straight legs with recurved hooks, a long apex hub;
2. `double_basket` (TrapEase-like): six struts between hubs at both ends (a spindle);
3. `petals_and_legs` (Tulip-like): four legs and four petal loops near the apex;
4. `legs_and_arms` (G2 / Eclipse-like): six legs and six shorter, more flared arms in between;
5. `dome_and_legs` (Simon-Nitinol-like): a dome of seven loops above six nearly parallel legs;
6. `helical_arms` (Celect-like): four legs and eight arms that twist about the axis;
7. `short_cone_arms` (ALN-like): six narrow legs, three arms pointing the other way, a hook.

The design was fixed from the thesis's description of the dataset before any detector was run
on it (README, TEND / CVAD section); it is not tuned to a method's result.

A case's class comes from its own random stream (`source_base.class_stream`), so it is known
without rendering; the background, the device pose and the acquisition use streams that do not
depend on the class, so `render(rng, k)` for two classes k gives the same patient, pose and
exposure with two different devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from mlsup_jax.data.phantoms.curves import (
  projected_tube_profile,
  rasterize_curve,
  resample_polyline,
)
from mlsup_jax.data.phantoms.radiograph import expose_radiograph
from mlsup_jax.data.phantoms.source_base import LabelledPhantomSource
from mlsup_jax.data.phantoms.textures import fractal_noise, smoothstep

CLASS_NAMES = (
  "conical_hooked",
  "straight_cone",
  "double_basket",
  "petals_and_legs",
  "legs_and_arms",
  "dome_and_legs",
  "helical_arms",
  "short_cone_arms",
)
# The ID design is the largest class, as Option is in the IVC dataset (S5.7: 196 of 1,236).
DEFAULT_CLASS_WEIGHTS = (0.4,) + (0.6 / 7,) * 7
# Samples along one strut (before resampling to ≤ 0.5 px spacing).
_STRUT_SAMPLES = 64

# A strut is (z, r, phi) along the device, each `[n]`: z is the position along the axis in
# device lengths (0 = apex, 1 = base; negative = above the apex), r the distance from the axis
# in device lengths, phi the azimuth about the axis.
Strut = tuple[np.ndarray, np.ndarray, np.ndarray]


def _t() -> np.ndarray:
  return np.linspace(0.0, 1.0, _STRUT_SAMPLES)


def _ring(count: int, offset: float = 0.0) -> np.ndarray:
  return offset + 2.0 * np.pi * np.arange(count) / count


def _leg(z: np.ndarray, r: np.ndarray, phi: float) -> Strut:
  return z, r, np.full_like(z, phi)


def _loop(phi: float, z_of: np.ndarray, r_of: np.ndarray, sweep: float) -> Strut:
  """A wire loop leaving the axis and coming back, its two sides `sweep` radians apart."""
  theta = np.linspace(0.0, 1.0, _STRUT_SAMPLES)
  return z_of, r_of, phi + sweep * (theta - 0.5)


def _hook_above_apex() -> Strut:
  """A retrieval hook: a short stem above the apex ending in a J."""
  t = _t()
  stem = t < 0.5
  theta = np.clip((t - 0.5) / 0.5, 0.0, 1.0) * np.pi
  z = np.where(stem, -0.1 * t / 0.5, -0.1 - 0.035 * np.sin(theta))
  r = np.where(stem, 0.0, 0.035 * (1.0 - np.cos(theta)))
  return z, r, np.zeros_like(t)


def _conical_hooked() -> tuple[list[Strut], list[float]]:
  t = _t()
  flare = 0.28 * np.sin(0.5 * np.pi * np.minimum(t / 0.75, 1.0))
  barb = 0.1 * np.clip((t - 0.9) / 0.1, 0.0, 1.0)
  struts = [_leg(t, flare + barb, phi) for phi in _ring(6)]
  return struts + [_hook_above_apex()], [0.0]


def _straight_cone() -> tuple[list[Strut], list[float]]:
  t = _t()
  leg = t <= 0.92
  hook = np.clip((t - 0.92) / 0.08, 0.0, 1.0) * np.pi
  # Past 92% of its length each leg curls outwards and back up (a recurved hook).
  z = np.where(leg, t / 0.92, 1.0 + 0.03 * np.sin(hook) - 0.03 * (1.0 - np.cos(hook)))
  r = np.where(leg, 0.3 * t / 0.92, 0.3 + 0.04 * (1.0 - np.cos(hook)) / 2.0)
  struts = [_leg(z, r, phi) for phi in _ring(6)]
  hub = np.linspace(-0.08, 0.04, _STRUT_SAMPLES)
  return struts + [_leg(hub, np.zeros_like(hub), 0.0)], [-0.08, 0.0]


def _double_basket() -> tuple[list[Strut], list[float]]:
  t = _t()
  r = 0.24 * smoothstep(t, 0.0, 0.3) * (1.0 - smoothstep(t, 0.7, 1.0))
  return [_leg(t, r, phi) for phi in _ring(6)], [0.0, 1.0]


def _petals_and_legs() -> tuple[list[Strut], list[float]]:
  t = _t()
  legs = [_leg(t, 0.32 * t, phi) for phi in _ring(4)]
  arc = np.sin(np.pi * t)
  petals = [_loop(phi, 0.42 * arc, 0.16 * arc, 0.5) for phi in _ring(4, np.pi / 4)]
  return legs + petals, [0.0]


def _legs_and_arms() -> tuple[list[Strut], list[float]]:
  t = _t()
  legs = [_leg(t, 0.3 * t, phi) for phi in _ring(6)]
  arms = [_leg(0.5 * t, 0.34 * t**0.6, phi) for phi in _ring(6, np.pi / 6)]
  return legs + arms, [0.0]


def _dome_and_legs() -> tuple[list[Strut], list[float]]:
  t = _t()
  petals = [_loop(phi, 0.3 * t, 0.3 * np.sin(np.pi * t), 0.6) for phi in _ring(7)]
  legs = [_leg(0.3 + 0.7 * t, 0.05 + 0.25 * smoothstep(t, 0.0, 0.3), phi) for phi in _ring(6)]
  return petals + legs, [0.3]


def _helical_arms() -> tuple[list[Strut], list[float]]:
  t = _t()
  legs = [_leg(t, 0.33 * t, phi) for phi in _ring(4)]
  arms = [(0.45 * t, 0.26 * t, phi + 1.3 * t) for phi in _ring(8, np.pi / 8)]
  return legs + arms, [0.0]


def _short_cone_arms() -> tuple[list[Strut], list[float]]:
  t = _t()
  legs = [_leg(0.12 + 0.88 * t, 0.22 * t**0.8, phi) for phi in _ring(6)]
  arms = [_leg(0.12 - 0.12 * t, 0.25 * t, phi) for phi in _ring(3, np.pi / 6)]
  stem = np.linspace(0.0, 0.12, _STRUT_SAMPLES)
  hook = _hook_above_apex()
  return legs + arms + [_leg(stem, np.zeros_like(stem), 0.0), hook], [0.12]


DESIGNS: dict[str, Callable[[], tuple[list[Strut], list[float]]]] = {
  "conical_hooked": _conical_hooked,
  "straight_cone": _straight_cone,
  "double_basket": _double_basket,
  "petals_and_legs": _petals_and_legs,
  "legs_and_arms": _legs_and_arms,
  "dome_and_legs": _dome_and_legs,
  "helical_arms": _helical_arms,
  "short_cone_arms": _short_cone_arms,
}


class IvcFilterPhantomSource(LabelledPhantomSource):
  """Synthetic abdominal radiographs, each with one IVC filter of one of eight designs.

  Example: `image: [S, S, 1]` float32 in [0, 1] (`S = image_size`) and `class_id: []` int32, an
  index into `CLASS_NAMES` (the filter design; 0 = `conical_hooked`, the ID design).

  Args:
    split: "train", "val" or "test"; each split draws disjoint cases.
    num_cases: number of cases in the split.
    seed: non-negative base seed.
    image_size: S, ≥ 32.
    class_weights: relative frequency of each design of `CLASS_NAMES` (normalised; zeros
      allowed, not all zero). Default: 40% `conical_hooked`, the rest equally.
    cache_size: maximum number of cached cases; None: as many as fit in 128 MiB.

  Attributes:
    class_ids: `[num_cases]` int32, the design of every case (known without rendering).
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
    """Renders one radiograph with a filter of design `class_id` from `rng`.

    Returns:
      `[S, S]` float32 in [0, 1].
    """
    class_id = self.check_class_id(class_id)
    background_rng, device_rng, acquisition_rng = rng.spawn(3)
    pose = self._pose(device_rng)
    attenuation = self._background(background_rng, pose)
    attenuation += self.device_density(CLASS_NAMES[int(class_id)], pose)
    return expose_radiograph(acquisition_rng, attenuation, self._q_rows, self._q_cols)

  # -------------------------------------------------------------------------------- the device

  def _pose(self, rng: np.random.Generator) -> dict[str, float]:
    """The filter's pose, size and metal density (independent of its design)."""
    return {
      "row": rng.uniform(-0.12, 0.12),  # centre of the device, body units ([-1, 1] image)
      "col": rng.uniform(-0.2, 0.02),
      "length": rng.uniform(0.95, 1.25),
      "tilt": rng.uniform(-0.2, 0.2),  # in-plane, radians
      "lean": rng.uniform(-0.35, 0.35),  # out of plane (foreshortens the axis)
      "spin": rng.uniform(0.0, 2.0 * np.pi),  # about the axis
      "metal": rng.uniform(0.45, 0.75),  # projected density of one wire
      "width": rng.uniform(0.9, 1.2),  # wire width in pixels at 64²
    }

  def _project(self, pose: dict[str, float], z, r, phi) -> np.ndarray:
    """Device coordinates → `[n, 2]` pixel (row, col)."""
    lateral = r * np.cos(phi + pose["spin"])
    depth = r * np.sin(phi + pose["spin"])
    along = (z - 0.5) * math.cos(pose["lean"]) - depth * math.sin(pose["lean"])
    cos, sin = math.cos(pose["tilt"]), math.sin(pose["tilt"])
    row = pose["row"] + pose["length"] * (cos * along - sin * lateral)
    col = pose["col"] + pose["length"] * (sin * along + cos * lateral)
    scale = self.image_size / 2.0
    return np.stack([(row + 1.0) * scale - 0.5, (col + 1.0) * scale - 0.5], axis=1)

  def device_density(self, design: str, pose: dict[str, float]) -> np.ndarray:
    """The projected metal density of a filter of `design` in `pose`.

    Overlapping wires add (the projected thickness of metal adds up).

    Returns:
      `[S, S]` float32 ≥ 0.
    """
    size = self.image_size
    shape = (size, size)
    struts, hubs = DESIGNS[design]()
    width = pose["width"] * max(size / 64.0, 0.8)
    density = np.zeros(shape, np.float32)
    for z, r, phi in struts:
      points = resample_polyline(self._project(pose, z, r, phi), 0.4)
      soft, _ = rasterize_curve(points, width, shape)
      density += soft
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    for z in hubs:
      centre = self._project(pose, np.asarray([z]), np.zeros(1), np.zeros(1))[0]
      distance = np.hypot(rows - centre[0], cols - centre[1])
      density += 2.0 * projected_tube_profile(distance, 1.3 * width)
    return pose["metal"] * density

  # ---------------------------------------------------------------------------- the background

  def _background(self, rng: np.random.Generator, pose: dict[str, float]) -> np.ndarray:
    """Soft tissue, lumbar spine, bowel gas (attenuation units, like the chest phantom)."""
    size = self.image_size
    y, x = self._q_rows, self._q_cols
    px = 2.0 / size

    def inside(distance):
      return np.clip(0.5 - distance / px, 0.0, 1.0).astype(np.float32)

    tissue = rng.uniform(0.5, 0.65) * (1.0 + rng.uniform(-0.08, 0.08) * x)
    tissue = tissue * (1.0 + 0.04 * fractal_noise(rng, (size, size), beta=3.0))

    # Lumbar spine to the image right of the cava (patient's left), slightly tilted. A filter
    # (4–6 cm) is about as long as a vertebral body is wide and twice as long as it is tall.
    spine_x = pose["col"] + rng.uniform(0.65, 0.8)
    spine_tilt = rng.uniform(-0.08, 0.08)
    u = x - spine_x - spine_tilt * y  # across the spine
    half_width = rng.uniform(0.36, 0.44)
    height, disc = rng.uniform(0.48, 0.58), rng.uniform(0.09, 0.13)
    period = height + disc
    phase = rng.uniform(0.0, period)
    v = np.mod(y + phase, period) - period / 2.0  # along the spine, 0 at a body's centre
    bone = rng.uniform(0.8, 1.2)
    waist = half_width * (1.0 - 0.08 * (1.0 - np.square(v / (height / 2.0))))  # concave sides
    body = inside(np.abs(u) - waist) * inside(np.abs(v) - height / 2.0)
    cortex = body * (1.0 - inside(np.abs(u) - waist + 0.05) * inside(np.abs(v) - height / 2 + 0.05))
    dense = bone * (0.1 * body + 0.08 * cortex)
    for side in (-1.0, 1.0):  # pedicles: rings in the upper half of each body
      ring = np.hypot((u - side * 0.6 * half_width) / 0.08, (v + 0.25 * height) / 0.11)
      dense += bone * 0.08 * np.exp(-np.square((ring - 1.0) / 0.35))
      process = inside(np.abs(v + 0.05 * height) - 0.05)  # transverse processes
      reach = smoothstep(side * u, half_width - 0.02, half_width) * (
        1.0 - smoothstep(side * u, half_width + rng.uniform(0.2, 0.35), half_width + 0.45)
      )
      dense += bone * 0.06 * process * reach
    dense += bone * 0.05 * np.exp(-np.square(u / 0.06) - np.square((v - 0.1 * height) / 0.12))

    # Bowel gas (dark, fractal-edged pockets) and stool mottling.
    air = np.zeros((size, size), np.float32)
    for _ in range(int(rng.poisson(3.0))):
      cy, cx = rng.uniform(-0.9, 0.9), rng.uniform(-0.95, 0.6)
      radius = rng.uniform(0.05, 0.16)
      rho = np.hypot(y - cy, (x - cx) / rng.uniform(0.6, 1.6)) / radius
      edge = 0.3 * fractal_noise(rng, (size, size), beta=2.4)
      air += rng.uniform(0.12, 0.3) * smoothstep(1.0 - rho + edge, 0.0, 0.3)
    mottle = np.maximum(fractal_noise(rng, (size, size), beta=1.8), 0.0)
    air += rng.uniform(0.0, 0.06) * mottle * (x < spine_x - half_width)
    return (tissue - air + dense).astype(np.float32)
