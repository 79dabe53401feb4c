"""ImageMagick `-distort` methods in vectorised numpy: barrel, perspective, affine, arc, polar.

TEND (thesis §S5.3) trains a classifier to tell ID images from strongly distorted copies of them.
The reference code distorts with Wand/ImageMagick; this module re-implements the distortions it
uses (its presets are in `distortions.py`) as reverse maps: for every output pixel the
source position is computed for the whole image at once (numpy broadcasting) and sampled
bilinearly, exactly as `scipy.ndimage.map_coordinates` with `order=1` does. Every map is
deterministic, so per (map, image shape, virtual-pixel mode) the four neighbours' indices and
weights are computed once and cached (`functools.lru_cache`); a call is then one gather and a
weighted sum (~10× faster than `map_coordinates`, the same values to float32 rounding).

Coordinates follow ImageMagick: continuous image coordinates with pixel `(i, j)` (row, column)
centred at `(x, y) = (j + 0.5, i + 0.5)`; the image spans `[0, W] × [0, H]`. Control points are
given as `(u, v, x, y)`: source point `(u, v)` moves to destination point `(x, y)`.

Virtual pixels (`VIRTUAL_PIXELS`) are described in `data/augmentation/warp_sampling.py`.

Facts checked against ImageMagick's `MagickCore/distort.c` (not only the Usage pages):

* Perspective with fewer than 4 control-point pairs falls back to Affine; Affine with one pair
  is a translation and with two pairs a similarity (a third pair is faked by rotating the
  second about the first by 90° in both images).
* Arc always uses a "best-fit" output canvas (the bounding box of the arc); the other methods keep
  the input's canvas unless a viewport (`distort:viewport`) or best-fit (`+distort`) is asked for.
* ImageMagick's default background colour is white (`#ffffff`) and transparent is transparent
  black, which the reference code's `convert("L")` turns into grey level 0. So in the presets
  `"background"` fills with the image's white level and `"transparent"` with its black level.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from mlsup_jax.data.augmentation.warp_sampling import (
  SCIPY_MODES,
  Viewport,
  as_float_tuple,
  bilinear_gather_table,
  check_image,
  check_virtual_pixel,
  control_points_array,
  gather,
)

_PLAN_CACHE_SIZE = 64  # a 256² gather table is 2 MiB; the presets need 17 per image shape


# ----------------------------------------------------------------------------------------------
# Solvers (destination → source, as ImageMagick builds its reverse maps).


def solve_affine(control_points) -> np.ndarray:
  """The affine reverse map `[u, v]ᵀ = M · [x, y, 1]ᵀ` through the control points.

  One pair gives a translation; two pairs a similarity (scale, rotation, translation: a third
  pair is made by rotating the second about the first by 90° in both images, as ImageMagick
  does); three or more pairs the least-squares affine map.

  Args:
    control_points: `[N, 4]` or `4N` numbers, rows `(u, v, x, y)`: source `(u, v)` goes to
      destination `(x, y)`.

  Returns:
    `M: [2, 3]` float64.
  """
  points = control_points_array(control_points)
  if len(points) == 1:
    u, v, x, y = points[0]
    return np.array([[1.0, 0.0, u - x], [0.0, 1.0, v - y]])
  if len(points) == 2:
    (u0, v0, x0, y0), (u1, v1, x1, y1) = points
    fake = [u0 - (v1 - v0), v0 + (u1 - u0), x0 - (y1 - y0), y0 + (x1 - x0)]
    points = np.vstack([points, fake])
  design = np.column_stack([points[:, 2], points[:, 3], np.ones(len(points))])  # [N, 3]
  solution, _, rank, _ = np.linalg.lstsq(design, points[:, :2], rcond=None)
  if rank < 3:
    raise ValueError("Affine control points are degenerate (collinear destination points).")
  return solution.T


def solve_perspective(control_points) -> np.ndarray:
  """The projective reverse map through the control points, as a homography.

  `u = (c0 x + c1 y + c2) / (c6 x + c7 y + 1)`, `v = (c3 x + c4 y + c5) / (c6 x + c7 y + 1)`;
  the 8 coefficients are the least-squares solution of the linearised equations
  `c0 x + c1 y + c2 − c6 x u − c7 y u = u` (and likewise for v), exact for 4 pairs in general
  position. With fewer than 4 pairs ImageMagick falls back to Affine (`solve_affine`).

  Args:
    control_points: `[N, 4]` or `4N` numbers, rows `(u, v, x, y)`.

  Returns:
    `H: [3, 3]` float64 with `[u·w, v·w, w]ᵀ = H · [x, y, 1]ᵀ` and `H[2, 2] = 1`.
  """
  points = control_points_array(control_points)
  if len(points) < 4:
    return np.vstack([solve_affine(points), [0.0, 0.0, 1.0]])
  u, v, x, y = points.T
  zeros, ones = np.zeros_like(x), np.ones_like(x)
  rows_u = np.column_stack([x, y, ones, zeros, zeros, zeros, -x * u, -y * u])
  rows_v = np.column_stack([zeros, zeros, zeros, x, y, ones, -x * v, -y * v])
  design = np.vstack([rows_u, rows_v])  # [2N, 8]
  coeffs, _, rank, _ = np.linalg.lstsq(design, np.concatenate([u, v]), rcond=None)
  if rank < 8:
    raise ValueError("Perspective control points are degenerate (3 or more collinear).")
  return np.append(coeffs, 1.0).reshape(3, 3)


# ----------------------------------------------------------------------------------------------
# Reverse maps: destination continuous coordinates (x, y) → source continuous coordinates.
# Each returns (sx, sy, invalid-or-None); all are pure functions of their (hashable) arguments.


def _barrel_map(x, y, params, shape):
  a, b, c, d = params
  h, w = shape
  cx, cy, rscale = w / 2.0, h / 2.0, 2.0 / min(w, h)
  dx, dy = x - cx, y - cy
  r = np.hypot(dx, dy) * rscale
  f = ((a * r + b) * r + c) * r + d
  return dx * f + cx, dy * f + cy, None


def _perspective_map(x, y, params, shape):
  del shape
  hom = solve_perspective(np.asarray(params).reshape(-1, 4))
  p = hom[0, 0] * x + hom[0, 1] * y + hom[0, 2]
  q = hom[1, 0] * x + hom[1, 1] * y + hom[1, 2]
  r = hom[2, 0] * x + hom[2, 1] * y + 1.0
  # "Ground" is the side of the horizon (r = 0) holding the first destination control point.
  first = np.asarray(params[2:4])
  ground = 1.0 if hom[2, 0] * first[0] + hom[2, 1] * first[1] + 1.0 >= 0 else -1.0
  invalid = r * ground <= 1e-12
  safe_r = np.where(invalid, 1.0, r)
  sx, sy = p / safe_r, q / safe_r
  if not invalid.any():
    invalid = None
  return sx, sy, invalid


def _affine_map(x, y, params, shape):
  del shape
  m = solve_affine(np.asarray(params).reshape(-1, 4))
  return m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2], None


def _affine_projection_map(x, y, params, shape):
  del shape
  sx_, rx, ry, sy_, tx, ty = params
  forward = np.array([[sx_, ry], [rx, sy_]])
  if abs(np.linalg.det(forward)) < 1e-12:
    raise ValueError(f"affine_projection matrix {params[:4]} is singular (no inverse).")
  inv = np.linalg.inv(forward)
  dx, dy = x - tx, y - ty
  return inv[0, 0] * dx + inv[0, 1] * dy, inv[1, 0] * dx + inv[1, 1] * dy, None


def _arc_coefficients(degrees: float, shape) -> tuple[tuple[float, ...], Viewport]:
  """ImageMagick's Arc coefficients (c0…c4, already rescaled for lookup) and best-fit canvas."""
  h, w = shape
  c0 = -math.pi / 2  # the centre of the source goes to the top of the arc
  c1 = math.radians(degrees)
  c3 = h - 1.0
  c2 = w / c1 + c3 / 2.0  # radius of the top edge: the centre line keeps its length
  c4 = (w - 1.0) / 2.0
  corners = []
  for angle in (c0 - c1 / 2, c0 + c1 / 2):
    for radius in (c2, c2 - c3):
      corners.append((radius * math.cos(angle), radius * math.sin(angle)))
  angle = math.ceil((c0 - c1 / 2) / (math.pi / 2)) * (math.pi / 2)
  while angle < c0 + c1 / 2:  # axis-aligned extremes along the top of the arc
    corners.append((c2 * math.cos(angle), c2 * math.sin(angle)))
    angle += math.pi / 2
  xs, ys = zip(*corners, strict=True)
  gx, gy = math.floor(min(xs) - 0.5), math.floor(min(ys) - 0.5)
  gw, gh = math.ceil(max(xs) - gx + 0.5), math.ceil(max(ys) - gy + 0.5)
  coeffs = (c0, 2 * math.pi * w / c1, c2, h / c3, c4)
  return coeffs, (float(gx), float(gy), float(gw), float(gh))


def _arc_map(x, y, params, shape):
  c0, c1, c2, c3, c4 = _arc_coefficients(params[0], shape)[0]
  turn = (np.arctan2(y, x) - c0) / (2 * math.pi)
  turn -= np.round(turn)  # fraction of a full turn from the top, in [-1/2, 1/2]
  radius = np.hypot(x, y)
  # + 0.5 makes the column a continuous coordinate (ImageMagick adds it here, not in c4).
  return turn * c1 + c4 + 0.5, (c2 - radius) * c3, None


def _polar_radius(radius: float, shape) -> float:
  h, w = shape
  return min(w, h) / 2.0 if radius == 0 else radius  # 0: ImageMagick's "closest edge"


def _polar_map(x, y, params, shape):
  radius, best_fit = params
  h, w = shape
  rmax = _polar_radius(radius, shape)
  cx, cy = (0.0, 0.0) if best_fit else (w / 2.0, h / 2.0)
  dx, dy = x - cx, y - cy
  # Angle measured from "down" (+y), in [-π, π): the source's centre column points down.
  angle = np.arctan2(dx, dy) / (2 * math.pi)
  angle = (angle - np.round(angle)) * (2 * math.pi)
  return angle * (w / (2 * math.pi)) + w / 2.0, np.hypot(dx, dy) * (h / rmax), None


_MAPS = {
  "barrel": _barrel_map,
  "perspective": _perspective_map,
  "affine": _affine_map,
  "affine_projection": _affine_projection_map,
  "arc": _arc_map,
  "polar": _polar_map,
}


def _plan(
  method: str, params: tuple, shape: tuple[int, int], viewport: Viewport | None
) -> tuple[np.ndarray, np.ndarray | None]:
  """Source indices `[2, H, W]` (row, column) and invalid mask `[H, W]` for one distortion.

  The output has the input's shape; a `viewport` `(x, y, w, h)` of the destination plane is
  resampled onto it (ImageMagick's viewport or best-fit canvas followed by a resize back).
  """
  h, w = shape
  vx, vy, vw, vh = viewport if viewport is not None else (0.0, 0.0, float(w), float(h))
  x = vx + (np.arange(w, dtype=np.float64) + 0.5) * (vw / w)
  y = vy + (np.arange(h, dtype=np.float64) + 0.5) * (vh / h)
  xx, yy = np.broadcast_arrays(x[None, :], y[:, None])
  sx, sy, invalid = _MAPS[method](xx, yy, params, shape)
  coords = np.stack(np.broadcast_arrays(sy - 0.5, sx - 0.5)).astype(np.float64)  # → indices
  if invalid is not None:
    coords[:, invalid] = 0.0  # finite placeholders; these pixels get the matte value
    invalid.setflags(write=False)  # kept in the cached gather table
  return coords, invalid


@functools.lru_cache(maxsize=_PLAN_CACHE_SIZE)
def _gather_table(
  method: str, params: tuple, shape: tuple[int, int], viewport: Viewport | None, mode: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  """`bilinear_gather_table` of one distortion's reverse map, cached per (map, shape, mode)."""
  coords, invalid = _plan(method, params, shape, viewport)
  return bilinear_gather_table(coords, invalid, shape, mode)


def _distort(image, method, params, viewport, virtual_pixel, fill, matte=None):
  image = check_image(image)
  mode = SCIPY_MODES[check_virtual_pixel(virtual_pixel)]
  if viewport is not None:
    viewport = as_float_tuple(viewport)
    if len(viewport) != 4 or viewport[2] <= 0 or viewport[3] <= 0:
      raise ValueError(f"viewport must be (x, y, width > 0, height > 0); got {viewport}.")
  table = _gather_table(method, params, tuple(image.shape[:2]), viewport, mode)
  return gather(image, table, float(fill), float(fill if matte is None else matte))


# ----------------------------------------------------------------------------------------------
# Public distortions: image [H, W] or [H, W, C] → same shape and dtype.


def barrel(
  image,
  a: float,
  b: float,
  c: float,
  d: float | None = None,
  *,
  virtual_pixel: str = "edge",
  fill: float = 0.0,
  viewport: Viewport | None = None,
) -> np.ndarray:
  """ImageMagick `-distort Barrel "A B C [D]"`: radial lens distortion about the image centre.

  `r_src = (A·r³ + B·r² + C·r + D)·r`, with r the destination radius normalised by half the
  smaller image side; `D = 1 − A − B − C` when omitted (keeps that radius fixed). `(0, 0, 0, 1)`
  is the identity; `f(r) > 1` samples further out, shrinking the picture towards the centre.

  Args:
    image: `[H, W]` or `[H, W, C]`.
    a, b, c, d: the polynomial coefficients.
    virtual_pixel: one of `VIRTUAL_PIXELS`.
    fill: the constant for `"transparent"` / `"background"` virtual pixels.
    viewport: optional `(x, y, w, h)` region of the destination plane, resized to the output.

  Returns:
    The distorted image, same shape and dtype.
  """
  d = 1.0 - a - b - c if d is None else d
  return _distort(image, "barrel", as_float_tuple((a, b, c, d)), viewport, virtual_pixel, fill)


def perspective(
  image,
  control_points,
  *,
  virtual_pixel: str = "edge",
  fill: float = 0.0,
  viewport: Viewport | None = None,
  matte: float | None = None,
) -> np.ndarray:
  """ImageMagick `-distort Perspective "u1,v1 x1,y1 …"`: source `(u, v)` moves to `(x, y)`.

  Each destination pixel `(x, y)` is looked up at `(u, v) = H(x, y)` (`solve_perspective`);
  pixels beyond the horizon (the "sky") get `matte`. With fewer than 4 pairs this is `affine`.

  Args:
    image: `[H, W]` or `[H, W, C]`.
    control_points: `[N, 4]` or `4N` numbers, rows `(u, v, x, y)` in pixels of this image.
    virtual_pixel: one of `VIRTUAL_PIXELS`.
    fill: the constant for `"transparent"` / `"background"` virtual pixels.
    viewport: optional `(x, y, w, h)` region of the destination plane (ImageMagick's
      `distort:viewport`), resized to the output.
    matte: the value of sky pixels (ImageMagick's `-mattecolor`); None: `fill`.

  Returns:
    The distorted image, same shape and dtype.
  """
  params = as_float_tuple(control_points_array(control_points))
  return _distort(image, "perspective", params, viewport, virtual_pixel, fill, matte)


def affine(
  image,
  control_points,
  *,
  virtual_pixel: str = "edge",
  fill: float = 0.0,
  viewport: Viewport | None = None,
) -> np.ndarray:
  """ImageMagick `-distort Affine "u1,v1 x1,y1 …"`: the least-squares affine map (`solve_affine`).

  Args:
    image: `[H, W]` or `[H, W, C]`.
    control_points: `[N, 4]` or `4N` numbers, rows `(u, v, x, y)` in pixels of this image.
    virtual_pixel: one of `VIRTUAL_PIXELS`.
    fill: the constant for `"transparent"` / `"background"` virtual pixels.
    viewport: optional `(x, y, w, h)` region of the destination plane, resized to the output.

  Returns:
    The distorted image, same shape and dtype.
  """
  params = as_float_tuple(control_points_array(control_points))
  return _distort(image, "affine", params, viewport, virtual_pixel, fill)


def affine_projection(
  image,
  sx: float,
  rx: float,
  ry: float,
  sy: float,
  tx: float,
  ty: float,
  *,
  virtual_pixel: str = "edge",
  fill: float = 0.0,
  viewport: Viewport | None = None,
) -> np.ndarray:
  """ImageMagick `-distort AffineProjection "sx,rx,ry,sy,tx,ty"`: a forward affine matrix.

  Source `(u, v)` goes to `x = sx·u + ry·v + tx`, `y = rx·u + sy·v + ty` (about the image's
  top-left corner); each output pixel is looked up through the inverse.

  Args:
    image: `[H, W]` or `[H, W, C]`.
    sx, rx, ry, sy, tx, ty: the forward matrix (translations in pixels of this image).
    virtual_pixel: one of `VIRTUAL_PIXELS`.
    fill: the constant for `"transparent"` / `"background"` virtual pixels.
    viewport: optional `(x, y, w, h)` region of the destination plane, resized to the output.

  Returns:
    The distorted image, same shape and dtype.
  """
  params = as_float_tuple((sx, rx, ry, sy, tx, ty))
  return _distort(image, "affine_projection", params, viewport, virtual_pixel, fill)


def arc(image, degrees: float, *, virtual_pixel: str = "edge", fill: float = 0.0) -> np.ndarray:
  """ImageMagick `-distort Arc degrees`: bends the image into an arc, resized back to its size.

  Columns become angles (the centre column points up, the arc spans `degrees`), rows become
  radii: the top row lies on the outer radius `R = W / arc + (H − 1) / 2` (so the centre line
  keeps its length), the bottom row `H − 1` further in. Arc always renders on the best-fit
  canvas (the arc's bounding box), which is then resized back to `[H, W]`. Virtual pixels
  fill the rest of that box (`"tile"` continues the image around the circle).

  Args:
    image: `[H, W]` or `[H, W, C]`.
    degrees: the arc's angle, > 0 (may exceed 360).
    virtual_pixel: one of `VIRTUAL_PIXELS`.
    fill: the constant for `"transparent"` / `"background"` virtual pixels.

  Returns:
    The distorted image, same shape and dtype.
  """
  if not degrees > 0:
    raise ValueError(f"arc degrees must be > 0, got {degrees}.")
  image = check_image(image)
  viewport = _arc_coefficients(float(degrees), image.shape[:2])[1]
  return _distort(image, "arc", (float(degrees),), viewport, virtual_pixel, fill)


def polar(
  image,
  radius: float,
  *,
  virtual_pixel: str = "edge",
  fill: float = 0.0,
  best_fit: bool = False,
) -> np.ndarray:
  """ImageMagick `-distort Polar Rmax`: wraps the image around a centre (x → angle, y → radius).

  Column `u` becomes the angle `θ = 2π·(u − W/2) / W` measured from straight down, row `v` the
  radius `r = v·Rmax / H`: the top row collapses to the centre and the bottom row lies on the
  circle of radius `Rmax`. Without `best_fit` (Wand's default) the output keeps the input's
  canvas centred on the image centre, so a large `Rmax` shows only the image's upper part; with
  `best_fit` (`+distort`) the canvas is the circle's `2·Rmax` square, resized back to `[H, W]`.

  Args:
    image: `[H, W]` or `[H, W, C]`.
    radius: `Rmax` in pixels of this image, > 0; 0 means the distance to the closest edge.
    virtual_pixel: one of `VIRTUAL_PIXELS` (outside the circle).
    fill: the constant for `"transparent"` / `"background"` virtual pixels.
    best_fit: render the whole circle, resized back to the input size.

  Returns:
    The distorted image, same shape and dtype.
  """
  if radius < 0:
    raise ValueError(f"polar radius must be >= 0, got {radius}.")
  image = check_image(image)
  viewport = None
  if best_fit:
    rmax = _polar_radius(float(radius), image.shape[:2])
    low = math.floor(-rmax - 0.5)
    size = float(math.ceil(rmax - low + 0.5))
    viewport = (float(low), float(low), size, size)
  params = (float(radius), bool(best_fit))
  return _distort(image, "polar", params, viewport, virtual_pixel, fill)


DISTORTIONS = {
  "barrel": barrel,
  "perspective": perspective,
  "affine": affine,
  "affine_projection": affine_projection,
  "arc": arc,
  "polar": polar,
}
