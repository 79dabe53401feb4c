"""Liver tumours of the abdominal CT phantom (`abdomen`): placement, shape and contrast.

`paint_tumour` paints one tumour of a subtype (0 hcc, 1 cyst, 2 metastasis, 3 hemangioma, 4 icc;
see the `abdomen` module docstring for their appearance) inside a case's liver:

* `_place`: the radius (per-subtype scaled, clipped to the liver's depth) and a centre deep
  enough inside the liver (3-D: in the middle half of the slab);
* `_shape`: the normalised radius `ρ` in a randomly rotated, stretched local frame, its margin
  deformed by smooth lobes and, for iccs, spicules;
* `_contrast`: the HU offset from the parenchyma level (texture, capsule, rim, nodules or
  strands) and the margin's blur width.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from mlsup_jax.data.phantoms.shapes import bumps, paint, random_rotation, unit_vectors
from mlsup_jax.data.phantoms.textures import smoothstep


def paint_tumour(
  rng: np.random.Generator,
  grid: dict,
  image: np.ndarray,
  liver: np.ndarray,
  liver_soft: np.ndarray,
  level: float,
  subtype: int,
  noise: Callable[..., np.ndarray],
  slice_thickness: float,
) -> np.ndarray:
  """Paints one tumour of `subtype` into `image` (in place), inside the liver.

  Args:
    rng: the case's generator (drawn from in a fixed order).
    grid: the case's body-frame coordinates (`AbdomenPhantomSource._grid`).
    image: `[*S]` float32 HU, painted in place.
    liver: `[*S]` bool liver mask; `S` is `(H, W)` (2-D) or `(D, H, W)` (3-D).
    liver_soft: `[*S]` float32 anti-aliased liver coverage in [0, 1].
    level: the parenchyma's mean HU in this case.
    subtype: the index into `SUBTYPE_NAMES` (0–4).
    noise: the case's texture generator, `noise(rng, **fractal_noise_kwargs) → [*S]`.
    slice_thickness: the 3-D slice thickness in in-plane pixels (unused in 2-D).

  Returns:
    `[*S]` bool tumour mask, a subset of `liver`.
  """
  planar = liver.ndim == 2
  radius_px, centre = _place(rng, grid, liver, subtype, slice_thickness)
  rho, unit = _shape(rng, grid, centre, radius_px * grid["px"], subtype, planar)
  delta, edge_px = _contrast(rng, noise, rho, unit, radius_px, level, subtype, planar)
  width = min(edge_px / radius_px, 0.45)
  presence = (1.0 - smoothstep(rho, 1.0 - width, 1.0 + width)) * liver_soft
  paint(image, presence, level + delta)
  return (rho < 1.0) & liver


def _place(rng, grid, liver, subtype, slice_thickness) -> tuple[float, tuple]:
  """The radius (in-plane pixels) and the body-frame centre `(y, x, z)` of a tumour."""
  planar = liver.ndim == 2
  scale = liver.shape[-1] / 64.0
  # Lobes and spicules enlarge hemangiomas and iccs; size must not give OOD away.
  radius_px = rng.uniform(4.0, 12.0) * scale * (1.0, 1.0, 1.0, 0.92, 0.85)[subtype]
  # Centre: a liver voxel deep enough for the radius (3-D: in the middle half of the slab).
  sampling = (slice_thickness, 1.0, 1.0) if not planar else None
  # Zero padding: the field of view's border counts as the organ's edge, so tumours stay whole.
  depth_map = ndimage.distance_transform_edt(np.pad(liver, 1), sampling=sampling)
  depth_map = depth_map[(slice(1, -1),) * liver.ndim]
  if not planar:
    depth = liver.shape[0]
    depth_map[: depth // 4] = 0.0
    depth_map[depth - depth // 4 :] = 0.0
  deepest = float(depth_map.max())
  radius_px = max(min(radius_px, (deepest - 1.0) / 1.1), 2.0 * scale)
  candidates = np.flatnonzero(depth_map >= min(1.1 * radius_px + 1.0, deepest))
  centre_index = np.unravel_index(candidates[rng.integers(len(candidates))], liver.shape)
  y, x, z = (np.broadcast_to(grid[k], liver.shape) for k in ("y", "x", "z"))
  return radius_px, (y[centre_index], x[centre_index], z[centre_index])


def _shape(rng, grid, centre, radius, subtype, planar) -> tuple[np.ndarray, list[np.ndarray]]:
  """`ρ` (< 1 inside the tumour) and the unit direction `[3 × [*S]]` in the local frame."""
  # Local frame: a random rotation (in-plane in 2-D) and aspect ratio per subtype.
  aspect = (1.3, 1.12, 1.25, 1.3, 1.55)[subtype]
  axes = radius * np.array([1.0, 1.0 / rng.uniform(1.0, aspect), rng.uniform(0.85, 1.0)])
  rotation = random_rotation(rng, planar)
  offsets = (grid["y"] - centre[0], grid["x"] - centre[1], grid["z"] - centre[2])
  local = [sum(rotation[k, j] * offsets[j] for j in range(3)) / axes[k] for k in range(3)]
  rho = np.sqrt(sum(w * w for w in local))
  unit = [w / np.maximum(rho, 1e-6) for w in local]

  # Margin: smooth lobes (lobulated / irregular) and narrow spikes (spiculated).
  lobes = {0: (3, 0.0, 0.06), 1: (0, 0.0, 0.0), 2: (5, -0.08, 0.12), 3: (6, 0.06, 0.18)}
  count, low, high = lobes.get(subtype, (3, -0.15, 0.15))
  margin = bumps(
    unit,
    unit_vectors(rng, count, planar),
    rng.uniform(low, high, count),
    rng.uniform(3.0, 8.0, count),
  )
  if subtype == 4:  # icc: spicules
    count = int(rng.integers(7, 13))
    margin += bumps(
      unit,
      unit_vectors(rng, count, planar),
      rng.uniform(0.15, 0.35, count),
      rng.uniform(20.0, 40.0, count),
    )
  return rho / np.maximum(1.0 + margin, 0.3), unit


def _contrast(rng, noise, rho, unit, radius_px, level, subtype, planar) -> tuple:
  """The HU offset `[*S]` from the parenchyma `level` and the margin's blur (pixels)."""
  fine = noise(rng, beta=2.0)
  edge_px = (0.7, 0.35, 1.0, 0.6, rng.uniform(1.5, 2.5))[subtype]
  if subtype == 0:  # hcc: iso/hyper, mosaic, thin enhancing capsule
    mosaic = np.tanh(1.5 * noise(rng, beta=3.0, min_wavelength=3.0, max_wavelength=12.0))
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
    directions = unit_vectors(rng, count, planar)
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
    ridges = noise(rng, beta=3.0, min_wavelength=3.0, max_wavelength=10.0)
    strands = np.exp(-np.square(ridges / 0.3))
    rim = np.exp(-np.square((rho - 0.8) / 0.2))
    delta = rng.uniform(-55.0, -32.0) + rng.uniform(8.0, 20.0) * strands + 4.0 * fine
    delta = delta + rng.uniform(5.0, 20.0) * rim
  return delta, edge_px
