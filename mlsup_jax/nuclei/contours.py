"""Closed contours of a region, their curvature, and concave-point voting (thesis §3.1, step 1).

A region's outer boundary is traced (`skimage.measure.find_contours` at 0.5 on the padded mask),
resampled at one point per pixel of arc and oriented so that its total turning is +2π (convex
points then have κ > 0). The coordinates are differentiated with zero-mean derivative-of-Gaussian
kernels along the arc (the code's σ = 6 px at its magnification; `sigma` here), circularly, and

    κ = (x′ y″ − y′ x″) / (x′² + y′²)^{3/2}.

Concave segments are the circular runs of κ < 0; a segment is kept when its total turning
`Σ |κ| ds` exceeds `min_turning` (0.55) and it spans at least `min_points` points (10) or
`min_arc` pixels of arc (15). Each kept segment votes for one candidate point (Eq. 3.1): the
point at the κ-weighted mean arc position `s* = Σ κ s / Σ κ`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from skimage import measure

__all__ = ["Contour", "concave_points", "trace_contour"]


@dataclasses.dataclass(frozen=True)
class Contour:
  """A closed contour sampled at unit arc spacing.

  Attributes:
    points: `[N, 2]` (row, column) positions, counter-clockwise in the sense that convex points
      have positive curvature.
    curvature: `[N]` κ at each point.
    normals: `[N, 2]` unit outward normals.
  """

  points: np.ndarray
  curvature: np.ndarray
  normals: np.ndarray

  def __len__(self) -> int:
    return len(self.points)

  def arc(self, i: int, j: int) -> int:
    """Points walked from i to j along the contour's order (0 … N − 1)."""
    return (j - i) % len(self)


def _resample(points: np.ndarray) -> np.ndarray:
  """A closed polyline resampled at unit arc spacing."""
  closed = np.vstack([points, points[:1]])
  steps = np.linalg.norm(np.diff(closed, axis=0), axis=1)
  arc = np.concatenate([[0.0], np.cumsum(steps)])
  count = max(int(np.floor(arc[-1])), 8)
  positions = np.linspace(0.0, arc[-1], count, endpoint=False)
  return np.stack([np.interp(positions, arc, closed[:, k]) for k in range(2)], axis=1)


def trace_contour(mask: np.ndarray, sigma: float) -> Contour:
  """The outer contour of a single region `mask [H, W]` (module docstring).

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.nuclei.contours import trace_contour
    >>> yy, xx = np.mgrid[:41, :41]
    >>> c = trace_contour((yy - 20) ** 2 + (xx - 20) ** 2 <= 15**2, sigma=2)
    >>> round(float(np.median(c.curvature)), 2)  # 1 / radius
    0.07

  Raises:
    ValueError: an empty mask.
  """
  if not np.any(mask):
    raise ValueError("Cannot trace the contour of an empty region.")
  padded = np.pad(mask.astype(np.float32), 1)
  contours = measure.find_contours(padded, 0.5)
  points = max(contours, key=len) - 1.0  # the outer boundary is the longest
  points = _resample(points)
  # Orientation: total signed turning +2π for the outer boundary.
  derivative = [
    ndimage.gaussian_filter1d(points[:, k], sigma, order=1, mode="wrap") for k in (0, 1)
  ]
  second = [ndimage.gaussian_filter1d(points[:, k], sigma, order=2, mode="wrap") for k in (0, 1)]
  y1, x1 = derivative
  y2, x2 = second
  curvature = (x1 * y2 - y1 * x2) / np.maximum((x1**2 + y1**2) ** 1.5, 1e-9)
  if np.sum(curvature * np.hypot(x1, y1)) < 0:
    points, curvature = points[::-1].copy(), -curvature[::-1]
    y1, x1 = -y1[::-1], -x1[::-1]
  speed = np.maximum(np.hypot(x1, y1), 1e-9)
  # Outward normal: the tangent (dy, dx) rotated so it points away from the region's centroid.
  normals = np.stack([x1, -y1], axis=1) / speed[:, None]
  centre = points.mean(axis=0)
  if np.mean(np.sum((points - centre) * normals, axis=1)) < 0:
    normals = -normals
  return Contour(points=points, curvature=curvature, normals=normals)


def concave_points(
  contour: Contour, min_turning: float = 0.55, min_points: int = 10, min_arc: float = 15.0
) -> np.ndarray:
  """Indices of the candidate points: one per kept concave segment (module docstring)."""
  concave = contour.curvature < 0
  n = len(contour)
  if concave.all() or not concave.any():
    return np.zeros(0, np.int64)
  # Rotate so the contour starts on a convex point: runs then never wrap around.
  start = int(np.argmin(concave))
  order = (np.arange(n) + start) % n
  runs, current = [], []
  for index in order:
    if concave[index]:
      current.append(index)
    elif current:
      runs.append(current)
      current = []
  if current:
    runs.append(current)
  candidates = []
  for run in runs:
    kappa = contour.curvature[run]
    if np.sum(np.abs(kappa)) <= min_turning:
      continue
    if len(run) < min_points and len(run) < min_arc:  # unit spacing: points = pixels of arc
      continue
    s = np.arange(len(run), dtype=np.float64)
    centre = float(np.sum(kappa * s) / np.sum(kappa))
    candidates.append(run[int(round(centre))])
  return np.asarray(sorted(candidates), np.int64)
