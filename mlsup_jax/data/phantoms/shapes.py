"""Signed-distance shapes for phantoms drawn in continuous body coordinates.

* `ellipsoid_distance` (an approximate signed distance to an ellipse, an elliptic cylinder or an
  ellipsoid) and `smooth_min` (a blended union of two signed distances);
* `radial_directions`, `unit_vectors` and `bumps`: radial lobes and spikes that deform a
  shape's margin;
* `random_rotation`: a random 3-D rotation (in-plane for 2-D cases);
* `paint`: painter's-algorithm compositing of a soft coverage onto an image.

Coordinates are `(y, x, z)` arrays that broadcast against each other (2-D cases use a scalar z).
"""

from __future__ import annotations

import math

import numpy as np


def paint(image: np.ndarray, weight: np.ndarray, value) -> None:
  """In place: `image ← image · (1 − weight) + value · weight` (painter's algorithm)."""
  image *= 1.0 - weight
  image += np.asarray(value, np.float32) * weight


def ellipsoid_distance(coords, centre, axes, angle: float = 0.0) -> np.ndarray:
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


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
  """Polynomial smooth minimum of two signed distances (a blended union of two shapes)."""
  h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
  return b + (a - b) * h - k * h * (1.0 - h)


def radial_directions(coords, centre, axes) -> list[np.ndarray]:
  """Unit direction from `centre` in the frame scaled by `axes` (3 components)."""
  w = [(c - np.float32(c0)) / np.float32(a) for c, c0, a in zip(coords, centre, axes, strict=True)]
  norm = np.sqrt(sum(np.square(v) for v in w))
  return [v / np.maximum(norm, 1e-6) for v in w]


def unit_vectors(rng: np.random.Generator, count: int, planar: bool) -> np.ndarray:
  """`[count, 3]` random unit vectors (z component 0 when `planar`)."""
  v = rng.standard_normal((count, 3))
  if planar:
    v[:, 2] = 0.0
  return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)


def bumps(unit, directions: np.ndarray, amplitudes: np.ndarray, sharpness: np.ndarray):
  """Σ_j a_j · exp(κ_j (u · v_j − 1)): radial lobes (small κ) or spikes (large κ) on a shape."""
  total = np.zeros(np.broadcast_shapes(*(np.shape(u) for u in unit)), np.float32)
  for v, a, kappa in zip(directions, amplitudes, sharpness, strict=True):
    cosine = sum(np.float32(v[k]) * unit[k] for k in range(3))
    total += np.float32(a) * np.exp(np.float32(kappa) * (cosine - 1.0))
  return total


def random_rotation(rng: np.random.Generator, planar: bool) -> np.ndarray:
  """A `[3, 3]` rotation: about z when `planar`, else uniformly random."""
  if planar:
    angle = rng.uniform(0.0, 2.0 * math.pi)
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
  q, r = np.linalg.qr(rng.standard_normal((3, 3)))
  q = q * np.sign(np.diag(r))
  return q if np.linalg.det(q) > 0 else -q
