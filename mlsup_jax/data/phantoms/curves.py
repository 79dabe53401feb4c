"""Curves and their rasterisation.

* Curves: `random_walk_curve` (a walk whose curvature is itself a smooth random signal) and
  `spline_curve` (a cubic spline through control points), both returned as densely and
  uniformly sampled polylines so per-point attributes (width, contrast, …) can ride along.
* Rasterisation: `polyline_distance` (exact distance to the polyline and the index of the
  nearest vertex: one Euclidean distance transform on a cropped grid, refined by a local search
  over the nearby segments), `rasterize_curve` (soft and binary masks of a tube of varying
  width), `projected_tube_profile` (the projected thickness of a solid or hollow cylinder, e.g.
  for radiographs) and `render_gaussian_blobs` (punctate spots).

Coordinates are array-index order throughout: a 2-D point is `(row, col)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage, signal

from mlsup_jax.data.phantoms.textures import smooth_random_field


def resample_polyline(points: np.ndarray, spacing: float = 0.5) -> np.ndarray:
  """Resamples a polyline at (nearly) uniform arc-length `spacing`.

  Args:
    points: `[n, d]` vertices.
    spacing: target distance between consecutive samples, in pixels.

  Returns:
    `[m, d]` float64 samples from the first to the last vertex, m ≥ 2 (or the input if n < 2).
  """
  points = np.asarray(points, np.float64)
  if len(points) < 2:
    return points
  segment = np.linalg.norm(np.diff(points, axis=0), axis=1)
  arc = np.concatenate([[0.0], np.cumsum(segment)])
  count = max(int(math.ceil(arc[-1] / spacing)) + 1, 2)
  targets = np.linspace(0.0, arc[-1], count)
  return np.stack([np.interp(targets, arc, points[:, k]) for k in range(points.shape[1])], axis=1)


def random_walk_curve(
  rng: np.random.Generator,
  start: Sequence[float],
  heading: float,
  length: float,
  *,
  step: float = 0.5,
  curvature_std: float = 0.03,
  curvature_correlation: float = 12.0,
  heading_pull: float = 0.0,
) -> np.ndarray:
  """A smooth 2-D random curve: a walk whose curvature is a smooth random signal.

  The heading obeys `θ' = κ(s) − heading_pull · (θ − heading)`: κ is Gaussian-correlated noise
  along the arc length, and the pull keeps the curve going roughly in its initial direction
  (0 lets it wander freely).

  Args:
    rng: the case generator.
    start: `(row, col)` of the first point.
    heading: initial direction in radians; the direction vector is `(cos θ, sin θ)` in
      `(row, col)`, so 0 points down and π/2 points right.
    length: arc length in pixels.
    step: spacing of the returned samples, in pixels.
    curvature_std: std of κ, in radians per pixel.
    curvature_correlation: correlation length of κ along the curve, in pixels.
    heading_pull: relaxation rate of the heading towards `heading`, per pixel.

  Returns:
    `[n, 2]` float64 points spaced `step` apart, n = ceil(length / step) + 1.
  """
  count = max(int(math.ceil(length / step)) + 1, 2)
  kappa = curvature_std * smooth_random_field(rng, (count,), curvature_correlation / step)
  decay = 1.0 - min(heading_pull * step, 1.0)
  theta = heading + signal.lfilter([step], [1.0, -decay], kappa.astype(np.float64))
  moves = step * np.stack([np.cos(theta[:-1]), np.sin(theta[:-1])], axis=1)
  return np.concatenate([np.zeros((1, 2)), np.cumsum(moves, axis=0)]) + np.asarray(start, float)


def spline_curve(control_points: np.ndarray, spacing: float = 0.5) -> np.ndarray:
  """A cubic spline through `control_points` (any dimension), sampled every `spacing` pixels.

  Args:
    control_points: `[k, d]` points the curve passes through, in order, k ≥ 2.
    spacing: distance between consecutive output samples, in pixels.

  Returns:
    `[n, d]` float64 samples at uniform arc length.
  """
  from scipy.interpolate import CubicSpline

  control_points = np.asarray(control_points, np.float64)
  if len(control_points) < 3:
    return resample_polyline(control_points, spacing)
  chord = np.linalg.norm(np.diff(control_points, axis=0), axis=1)
  knots = np.concatenate([[0.0], np.cumsum(np.maximum(chord, 1e-6))])
  spline = CubicSpline(knots, control_points, bc_type="natural")
  fine = spline(np.linspace(0.0, knots[-1], max(int(4 * knots[-1] / spacing), 8)))
  return resample_polyline(fine, spacing)


def polyline_distance(
  points: np.ndarray, shape: Sequence[int], max_distance: float
) -> tuple[np.ndarray, np.ndarray]:
  """Distance from every pixel to a polyline, and the index of the nearest vertex.

  The vertices are rounded to pixels and one Euclidean distance transform (on the bounding box
  of the curve grown by `max_distance`) finds, for every pixel, a nearby vertex; the exact
  distance to the polyline is then found among the segments around it (a local search spanning
  ±1.5 px of arc), so distances are exact to float precision wherever the curve does not come
  back within ~1 px of itself. Vertices outside the image (but within `max_distance` of it)
  still count.

  Args:
    points: `[n, d]` vertices, d = len(shape), closely spaced (≤ 1 px; 0.25–0.5 px is typical).
    shape: the image shape.
    max_distance: pixels farther than this from the curve are not computed.

  Returns:
    distance: `[*shape]` float32, exact distance to the polyline, `inf` beyond `max_distance`.
    nearest: `[*shape]` int32 index of the vertex nearest to the closest point of the polyline
      (for looking up per-vertex attributes), −1 beyond `max_distance`.
  """
  shape = tuple(int(n) for n in shape)
  points = np.asarray(points, np.float64)
  distance = np.full(shape, np.inf, np.float32)
  nearest = np.full(shape, -1, np.int32)
  margin = int(math.ceil(max_distance)) + 1
  pixels = np.rint(points).astype(np.int64)
  low_limit, high_limit = -margin, np.asarray(shape) + margin
  usable = np.all((pixels >= low_limit) & (pixels < high_limit), axis=1)
  if not usable.any():
    return distance, nearest
  low = np.maximum(pixels[usable].min(axis=0) - margin, low_limit)
  high = np.minimum(pixels[usable].max(axis=0) + margin + 1, high_limit)
  # The box, clipped to the image, must be non-empty.
  out_low, out_high = np.maximum(low, 0), np.minimum(high, shape)
  if np.any(out_high <= out_low):
    return distance, nearest
  grid = np.full(tuple(high - low), -1, np.int64)
  grid[tuple((pixels[usable] - low).T)] = np.flatnonzero(usable)
  rough, indices = ndimage.distance_transform_edt(grid < 0, return_indices=True)
  crop = tuple(slice(a, b) for a, b in zip(out_low - low, out_high - low, strict=True))
  # Rounding moves a vertex by ≤ sqrt(d)/2 px, so this keeps every pixel within max_distance.
  near = np.nonzero(rough[crop] <= max_distance + math.sqrt(len(shape)))
  if not len(near[0]):
    return distance, nearest
  base = grid[tuple(ax[crop][near] for ax in indices)]
  pixel = np.stack(near, axis=1) + out_low  # [m, d] image coordinates
  best, best_index = _local_segment_search(points, pixel.astype(np.float64), base)
  keep = best <= max_distance
  region = tuple(ax[keep] for ax in pixel.T)
  distance[region] = best[keep]
  nearest[region] = best_index[keep]
  return distance, nearest


def _local_segment_search(
  points: np.ndarray, pixel: np.ndarray, base: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """Exact distance from each `pixel` to the polyline segments within ±1.5 px of arc of `base`."""
  count = len(points)
  if count == 1:
    return np.linalg.norm(pixel - points[0], axis=1), np.zeros(len(pixel), np.int64)
  steps = np.diff(points, axis=0)  # [n - 1, d]
  lengths2 = np.einsum("nd,nd->n", steps, steps)
  reach = int(min(max(math.ceil(1.5 / max(math.sqrt(float(np.median(lengths2))), 1e-3)), 1), 16))
  # Segments a → a + 1 for a in base − reach … base + reach − 1, all at once: [m, 2·reach].
  segment = np.clip(base[:, None] + np.arange(-reach, reach)[None, :], 0, count - 2)
  relative = pixel[:, None, :] - points[segment]  # [m, k, d]
  step = steps[segment]
  t = np.einsum("mkd,mkd->mk", relative, step) / np.maximum(lengths2[segment], 1e-12)
  t = np.clip(t, 0.0, 1.0)
  offset = relative - t[..., None] * step
  d2 = np.einsum("mkd,mkd->mk", offset, offset)
  best = np.argmin(d2, axis=1)
  rows = np.arange(len(pixel))
  best_segment = segment[rows, best]
  best_index = np.where(t[rows, best] < 0.5, best_segment, best_segment + 1)
  return np.sqrt(d2[rows, best]), best_index


def rasterize_curve(
  points: np.ndarray, widths: np.ndarray | float, shape: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
  """Soft and binary masks of a tube of varying width around a polyline.

  Args:
    points: `[n, d]` vertices spaced ≤ 1 px.
    widths: `[n]` (or a scalar) full width of the tube at each sample, in pixels.
    shape: the image shape.

  Returns:
    soft: `[*shape]` float32 in [0, 1], approximate pixel coverage (1 inside, linear ramp over
      one pixel at the boundary).
    binary: `[*shape]` bool, pixels whose centre lies within `width / 2` of the curve.
  """
  widths = np.broadcast_to(np.asarray(widths, np.float64), (len(points),))
  distance, nearest = polyline_distance(points, shape, widths.max() / 2.0 + 0.5)
  radius = np.where(nearest >= 0, widths[nearest] / 2.0, 0.0)
  binary = distance <= radius
  soft = np.clip(radius + 0.5 - distance, 0.0, 1.0).astype(np.float32)
  return soft, binary


def projected_tube_profile(
  distance: np.ndarray, radius: np.ndarray | float, inner_radius: np.ndarray | float = 0.0
) -> np.ndarray:
  """Normalised projected thickness of a solid (or hollow) cylinder seen side-on.

  A solid cylinder gives `sqrt(1 − (d/r)²)` (peak 1 on the axis); a hollow one with inner
  radius `r_i` gives the wall's chord length, which peaks at `d = r_i`: the "tram-track"
  appearance of a calcified vessel wall. Both are normalised to a peak of 1.

  Args:
    distance: distance of each pixel to the axis, any shape.
    radius: outer radius (broadcastable to `distance`).
    inner_radius: inner radius (0 = solid), broadcastable, < radius.

  Returns:
    float32 array like `distance`, in [0, 1], 0 beyond the outer radius.
  """
  d2 = np.square(np.asarray(distance, np.float64))
  r = np.maximum(np.asarray(radius, np.float64), 1e-6)
  ri = np.minimum(np.asarray(inner_radius, np.float64), 0.999 * r)
  outer = np.sqrt(np.maximum(r * r - d2, 0.0))
  inner = np.sqrt(np.maximum(ri * ri - d2, 0.0))
  peak = np.sqrt(r * r - ri * ri)
  return np.clip((outer - inner) / peak, 0.0, 1.0).astype(np.float32)


def render_gaussian_blobs(
  shape: Sequence[int],
  centres: np.ndarray,
  sigmas: np.ndarray,
  amplitudes: np.ndarray,
) -> np.ndarray:
  """Sum of isotropic Gaussian spots, each rendered in a small window (fast for many spots).

  Args:
    shape: the image shape (any dimension d).
    centres: `[k, d]` spot centres in pixels.
    sigmas: `[k]` spot std in pixels.
    amplitudes: `[k]` peak values.

  Returns:
    `[*shape]` float32.
  """
  shape = tuple(int(n) for n in shape)
  out = np.zeros(shape, np.float32)
  for centre, sigma, amplitude in zip(
    np.asarray(centres, float), np.ravel(sigmas), np.ravel(amplitudes), strict=True
  ):
    half = int(math.ceil(3.0 * sigma)) + 1
    low = np.maximum(np.floor(centre).astype(int) - half, 0)
    high = np.minimum(np.floor(centre).astype(int) + half + 2, shape)
    if np.any(high <= low):
      continue
    axes = [np.arange(a, b) - c for a, b, c in zip(low, high, centre, strict=True)]
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    r2 = sum(g * g for g in grids)
    region = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    out[region] += amplitude * np.exp(-r2 / (2.0 * sigma * sigma))
  return out
