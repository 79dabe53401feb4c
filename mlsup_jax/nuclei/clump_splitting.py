"""Splitting clumped nuclei without training (thesis §3.1; our reading of the author's MATLAB code).

Per foreground component whose area is at least 1.5 × the nucleus area (a clump), recursively:

1. trace the contour, compute its curvature with derivative-of-Gaussian kernels and let every
   concave segment vote for one candidate point (`contours.py`); two candidates closer than
   `merge_arc` along the contour merge into the one with the larger |κ| (the code's rule);
2. every candidate pair within `r2` of each other is a possible cut when the chord between them
   lies inside the clump and the pair passes `pair_screen`: `"normals"` (default) — their
   outward normals oppose (the angle between them ≥ `min_normal_angle`, the θ of the thesis's
   Eq. 3.2); `"gradient"` — the code's screening: pairs within `r1` always pass, pairs in the
   ring (r1, r2] pass when `V = 150 |G_a − G_b| / (1.5 d + 0.5 (−(κ_a + κ_b))) > 200`, with `G`
   the Prewitt gradient direction (degrees) of the image smoothed with σ = 2, d the distance
   and κ the curvature, all at the code's magnification (`v_alpha`, `v_beta`, `v_gamma`,
   `v_threshold`; the thesis's Eq. 3.2 has α = 100, β = 0.34 instead);
3. each possible cut is scored by the code's ellipse-fitting quality of the two parts it makes
   (`part_quality`: `Q = (16 IoU + 16 spread) / (1.5 Δx + 1.5 Δy + ΔP/P + 5 a/b)` with a direct
   least-squares ellipse fitted to the part's arc, 0 when a part is below 0.35 × the nucleus
   area); the cut with the best min(Q₁, Q₂) ≥ `quality` (0.70; 0.60 when nothing passes and the
   clump is at least twice a nucleus — the code's fallback) is made — greedily, the best first;
4. the dividing curve runs from p to q along `curve`: `"geodesic"` (default; the code walks down
   a grey-weighted distance inside the 5 × 5-dilated clump — ours is the cheapest path inside the
   clump where dim pixels are cheap, so the cut follows the dark gap between nuclei; a straight
   line when p and q are ≤ 6 px apart), `"hessian"` (the
   thesis's walk: step to the 8-neighbour within ±45° of the direction to q whose Hessian has a
   near-zero λ₁ and the largest λ₂, a straight line if it gets stuck) or `"straight"`;
5. the parts are split again while they are large enough.

Every length (σ 6, r1 45, r2 76, arc 30 and 15, 6 px) is the code's at its magnification, where
we take the nucleus radius to be `reference_radius` = 20 px; they scale with the nucleus size
(`foreground.nucleus_size`), so the pipeline works at any magnification. The code's screening of
non-adjacent pairs by Prewitt gradient directions is `pair_screen="gradient"`; its iterative
candidate-set bookkeeping is replaced by the recursion above (a stated simplification).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from skimage import draw, graph, measure
from skimage.feature import hessian_matrix, hessian_matrix_eigvals

from mlsup_jax.nuclei.contours import concave_points, trace_contour
from mlsup_jax.nuclei.foreground import (
  NucleusSize,
  foreground_mask,
  nuclear_channel,
  nucleus_size,
)

__all__ = [
  "SplitSettings",
  "gradient_directions",
  "gradient_screen_passes",
  "part_quality",
  "split_clump",
  "split_nuclei",
]
CURVES = ("geodesic", "hessian", "straight")
PAIR_SCREENS = ("normals", "gradient")


@dataclasses.dataclass(frozen=True)
class SplitSettings:
  """The algorithm's constants, in pixels at the code's magnification (module docstring)."""

  reference_radius: float = 20.0
  sigma: float = 6.0
  r1: float = 45.0
  r2: float = 76.0
  merge_arc: float = 30.0
  min_turning: float = 0.55
  min_points: int = 10
  min_arc: float = 15.0
  min_normal_angle: float = 90.0
  quality: float = 0.70
  fallback_quality: float = 0.60
  min_part: float = 0.35
  clump_factor: float = 1.5
  straight_below: float = 6.0
  curve: str = "geodesic"
  pair_screen: str = "normals"
  gradient_sigma: float = 2.0
  v_alpha: float = 150.0
  v_beta: float = 1.5
  v_gamma: float = 0.5
  v_threshold: float = 200.0

  def __post_init__(self):
    if self.curve not in CURVES:
      raise ValueError(f"curve must be one of {CURVES}, got {self.curve!r}.")
    if self.pair_screen not in PAIR_SCREENS:
      raise ValueError(f"pair_screen must be one of {PAIR_SCREENS}, got {self.pair_screen!r}.")


def gradient_directions(channel: np.ndarray, sigma: float) -> np.ndarray:
  """`[H, W]` Prewitt gradient direction in degrees of `channel` smoothed with `sigma` (MATLAB's
  `imgradient(..., 'prewitt')` convention: `atan2(−G_y, G_x)`, rows growing downwards)."""
  smooth = ndimage.gaussian_filter(np.asarray(channel, np.float32), sigma)
  return np.degrees(np.arctan2(-ndimage.prewitt(smooth, axis=0), ndimage.prewitt(smooth, axis=1)))


def gradient_screen_passes(
  distance: float, direction_a: float, direction_b: float, kappa_a: float, kappa_b: float,
  scale: float, settings: SplitSettings,
) -> bool:  # fmt: skip
  """The code's non-adjacent screening of one pair (module docstring, `pair_screen="gradient"`).

  `distance` and the curvatures are in this image's pixels; `scale` = this image's nucleus
  radius over the code's (lengths are divided by it, curvatures multiplied).

  Example:
    >>> from mlsup_jax.nuclei.clump_splitting import SplitSettings, gradient_screen_passes
    >>> s = SplitSettings(pair_screen="gradient")
    >>> gradient_screen_passes(30.0, 0.0, 180.0, -0.1, -0.1, 1.0, s)   # within r1: always
    True
    >>> gradient_screen_passes(60.0, 0.0, 180.0, -0.1, -0.1, 1.0, s)   # V = 27000 / 90.1
    True
    >>> gradient_screen_passes(60.0, 0.0, 20.0, -0.1, -0.1, 1.0, s)    # V = 3000 / 90.1
    False
  """
  d = distance / scale
  if d <= settings.r1:
    return True
  if d > settings.r2:
    return False
  denominator = settings.v_beta * d + settings.v_gamma * (-(kappa_a + kappa_b) * scale)
  value = settings.v_alpha * abs(direction_a - direction_b) / max(denominator, 1e-6)
  return bool(value > settings.v_threshold)


def _polygon_mask(points: np.ndarray, shape) -> np.ndarray:
  rr, cc = draw.polygon(points[:, 0], points[:, 1], shape)
  mask = np.zeros(shape, bool)
  mask[rr, cc] = True
  return mask


def _perimeter(points: np.ndarray) -> float:
  return float(np.sum(np.linalg.norm(np.diff(np.vstack([points, points[:1]]), axis=0), axis=1)))


def part_quality(arc: np.ndarray, shape, size: NucleusSize, settings: SplitSettings) -> float:
  """The code's ellipse-fitting quality of the part bounded by `arc [N, 2]` and its chord."""
  if len(arc) < 6:
    return 0.0
  polygon = _polygon_mask(arc, shape)
  area = polygon.sum()
  if area < settings.min_part * size.area:
    return 0.0
  model = measure.EllipseModel.from_estimate(arc[:, ::-1].astype(np.float64))
  if not model:
    return 0.0
  (xc, yc), (a, b), theta = model.center, model.axis_lengths, model.theta
  if not (np.isfinite([xc, yc, a, b]).all() and min(a, b) > 0):
    return 0.0
  t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
  ellipse = np.stack(
    [
      yc + a * np.cos(t) * np.sin(theta) + b * np.sin(t) * np.cos(theta),
      xc + a * np.cos(t) * np.cos(theta) - b * np.sin(t) * np.sin(theta),
    ],
    axis=1,
  )
  ellipse_mask = _polygon_mask(ellipse, shape)
  union = np.logical_or(polygon, ellipse_mask).sum()
  overlap = np.logical_and(polygon, ellipse_mask).sum() / union if union else 0.0
  scale = size.radius / settings.reference_radius  # Δx, Δy in the code's pixels
  centroid = np.argwhere(polygon).mean(axis=0)
  dy, dx = np.abs(centroid - (yc, xc)) / scale
  perimeter = _perimeter(arc)
  delta_perimeter = abs(_perimeter(ellipse) - perimeter) / perimeter
  centre = arc.mean(axis=0)
  v1, v2 = centre - arc[0], centre - arc[-1]
  cosine = np.dot(v1, v2) / max(np.linalg.norm(v1) * np.linalg.norm(v2), 1e-9)
  spread = 1.0 - np.arccos(np.clip(cosine, -1.0, 1.0)) / (2 * np.pi)
  ratio = max(a, b) / min(a, b)
  return float((16 * overlap + 16 * spread) / (1.5 * dx + 1.5 * dy + delta_perimeter + 5 * ratio))


def _dividing_curve(p, q, region, channel, size: NucleusSize, settings: SplitSettings):
  """`[K, 2]` pixels from p to q (module docstring, step 4)."""
  scale = size.radius / settings.reference_radius
  p, q = np.round(p).astype(int), np.round(q).astype(int)
  straight = np.stack(draw.line(*p, *q), axis=1)
  if settings.curve == "straight" or np.hypot(*(p - q)) <= settings.straight_below * scale:
    return straight
  if settings.curve == "geodesic":
    # Inside the clump dim pixels are cheap; its one-pixel rim (where p and q may round to) is
    # dear, so the path never shortcuts around the outside.
    rim = ndimage.binary_dilation(region, np.ones((3, 3), bool))
    cost = np.where(region, 0.05 + channel, np.where(rim, 10.0, np.inf))
    path, _ = graph.route_through_array(cost, tuple(p), tuple(q), fully_connected=True)
    return np.asarray(path)
  # The thesis's Hessian walk.
  elements = hessian_matrix(
    channel, sigma=max(1.0, 2.0 * scale), order="rc", use_gaussian_derivatives=True
  )
  low, high = hessian_matrix_eigvals(elements)[::-1]  # λ1 (small) first
  position, path = p.copy(), [p.copy()]
  for _ in range(int(4 * np.hypot(*(p - q))) + 8):
    if np.hypot(*(position - q)) <= 1.5:
      path.append(q)
      return np.asarray(path)
    heading = np.arctan2(*(q - position))
    best, best_score = None, -np.inf
    for step in ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)):
      if abs(np.angle(np.exp(1j * (np.arctan2(*step) - heading)))) > np.pi / 4:
        continue
      nxt = position + step
      if not (0 <= nxt[0] < region.shape[0] and 0 <= nxt[1] < region.shape[1]):
        continue
      if not region[tuple(nxt)]:
        continue
      score = high[tuple(nxt)] - 4 * abs(low[tuple(nxt)])
      if score > best_score:
        best, best_score = nxt, score
    if best is None:
      break
    position = best
    path.append(position.copy())
  return straight


def _cut(region: np.ndarray, curve: np.ndarray) -> list[np.ndarray]:
  """The region split along `curve`: its pieces (≥ 2 when the cut separates it)."""
  blocked = region.copy()
  blocked[curve[:, 0], curve[:, 1]] = False
  # The 8-connected curve separates 4-connected pieces.
  pieces, count = ndimage.label(blocked, structure=ndimage.generate_binary_structure(2, 1))
  if count < 2:
    return [region]
  # Curve pixels go to the piece of their nearest labelled pixel.
  _, nearest = ndimage.distance_transform_edt(pieces == 0, return_indices=True)
  filled = pieces[tuple(nearest)] * region
  areas = np.bincount(filled.ravel())[1:]
  order = np.argsort(areas)[::-1]
  return [filled == k + 1 for k in order if areas[k] > 0]


def split_clump(
  region: np.ndarray,
  channel: np.ndarray,
  size: NucleusSize,
  settings: SplitSettings,
  inherited: np.ndarray | None = None,
  depth: int = 0,
) -> list[np.ndarray]:
  """The nuclei of one clump `region [H, W]` (bool), as masks (module docstring).

  `inherited`: `[K, 2]` candidate points of the clump this part was cut from; those still on
  its contour stay candidates (a cut's new corners would otherwise hide the concavities next to
  it — the code keeps one candidate set per side of a dividing line for the same reason).
  """
  if depth > 8 or region.sum() < settings.clump_factor * size.area:
    return [region]
  scale = size.radius / settings.reference_radius
  contour = trace_contour(region, settings.sigma * scale)
  candidates = concave_points(
    contour,
    settings.min_turning,
    max(3, int(round(settings.min_points * scale))),
    settings.min_arc * scale,
  )
  candidates = _merge_close(contour, candidates, settings.merge_arc * scale)
  if inherited is not None and len(inherited):
    gaps = np.linalg.norm(contour.points[None, :, :] - inherited[:, None, :], axis=-1)
    near = gaps.min(axis=1) <= 2.0
    candidates = np.union1d(candidates, gaps[near].argmin(axis=1))
  if len(candidates) < 2:
    return [region]
  best, best_quality = None, -np.inf
  points, normals = contour.points, contour.normals
  if settings.pair_screen == "gradient":
    directions = gradient_directions(channel, settings.gradient_sigma * scale)
    rows, cols = np.clip(np.round(points).astype(int).T, 0, np.asarray(region.shape)[:, None] - 1)
    point_direction = directions[rows, cols]
  for a in range(len(candidates)):
    for b in range(a + 1, len(candidates)):
      i, j = candidates[a], candidates[b]
      distance = np.hypot(*(points[i] - points[j]))
      if distance > settings.r2 * scale:
        continue
      if settings.pair_screen == "gradient":
        kappa = contour.curvature
        if not gradient_screen_passes(
          distance, point_direction[i], point_direction[j], kappa[i], kappa[j], scale, settings
        ):
          continue
      else:
        angle = np.degrees(np.arccos(np.clip(np.dot(normals[i], normals[j]), -1.0, 1.0)))
        if angle < settings.min_normal_angle:
          continue
      chord = np.stack(
        draw.line(*np.round(points[i]).astype(int), *np.round(points[j]).astype(int)), 1
      )
      chord = np.clip(chord, 0, np.asarray(region.shape) - 1)
      grown = ndimage.binary_dilation(region)
      if grown[chord[:, 0], chord[:, 1]].mean() < 0.9:
        continue
      first = points[np.arange(i, i + contour.arc(i, j) + 1) % len(contour)]
      second = points[np.arange(j, j + contour.arc(j, i) + 1) % len(contour)]
      quality = min(
        part_quality(first, region.shape, size, settings),
        part_quality(second, region.shape, size, settings),
      )
      if quality > best_quality:
        best, best_quality = (i, j), quality
  threshold = settings.quality
  if best_quality < threshold and region.sum() >= 2 * size.area:
    threshold = settings.fallback_quality
  if best is None or best_quality < threshold:
    return [region]
  curve = _dividing_curve(points[best[0]], points[best[1]], region, channel, size, settings)
  curve = np.clip(curve, 0, np.asarray(region.shape) - 1)
  pieces = _cut(region, curve)
  if len(pieces) < 2:
    return [region]
  out = []
  known = points[candidates]
  for piece in pieces:
    out.extend(split_clump(piece, channel, size, settings, known, depth + 1))
  return out


def _merge_close(contour, candidates: np.ndarray, merge_arc: float) -> np.ndarray:
  """Adjacent candidates closer than `merge_arc` along the contour: keep the larger |κ|."""
  kept = list(candidates)
  changed = True
  while changed and len(kept) > 1:
    changed = False
    for k in range(len(kept)):
      i, j = kept[k], kept[(k + 1) % len(kept)]
      if i != j and contour.arc(i, j) < merge_arc:
        drop = i if abs(contour.curvature[i]) < abs(contour.curvature[j]) else j
        kept.remove(drop)
        changed = True
        break
  return np.asarray(kept, np.int64)


def split_nuclei(
  image,
  channel: int | None = 2,
  threshold: float | str = "otsu",
  nucleus_radius: float | None = None,
  settings: SplitSettings | None = None,
) -> np.ndarray:
  """`[H, W]` int32 nucleus instances of a fluorescence image (module docstring).

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.nuclei.clump_splitting import split_nuclei
    >>> yy, xx = np.mgrid[:60, :80]
    >>> two = ((yy - 30) ** 2 + (xx - 28) ** 2 <= 196) | ((yy - 30) ** 2 + (xx - 50) ** 2 <= 196)
    >>> int(split_nuclei(two.astype(np.float32), nucleus_radius=14).max())
    2

  Args:
    image: the image (`foreground.nuclear_channel` reads it: 8/16-bit or float, grey or colour).
    channel: the nuclear channel of a colour image (default blue).
    threshold: the foreground threshold ("otsu" or a number).
    nucleus_radius: pixels; None = estimated from the image.
    settings: the algorithm's constants.

  Returns:
    Instance labels, 0 = background; an image without foreground gives all zeros.
  """
  settings = settings or SplitSettings()
  intensity = nuclear_channel(image, channel)
  mask = foreground_mask(intensity, threshold)
  if not mask.any():
    return np.zeros(mask.shape, np.int32)
  return split_mask(mask, intensity, nucleus_size(mask, nucleus_radius), settings)


def split_mask(
  mask: np.ndarray,
  intensity: np.ndarray,
  size: NucleusSize,
  settings: SplitSettings,
  single_solidity: float | None = None,
) -> np.ndarray:
  """`[H, W]` int32 instances of a foreground `mask`: every component split by `split_clump`.

  Args:
    mask: `[H, W]` bool foreground.
    intensity: `[H, W]` the image the dividing curves follow (bright objects).
    size: the object scale.
    settings: the algorithm's constants.
    single_solidity: components more solid than this are single objects, never split (the
      steatosis adaptation, thesis §3.2: 0.95); None splits every component.
  """
  labels = np.zeros(mask.shape, np.int32)
  smoothed = ndimage.gaussian_filter(np.asarray(intensity, np.float32), 1.0)
  components, _ = ndimage.label(mask)
  next_id = 1
  for k, window in enumerate(ndimage.find_objects(components), start=1):
    if window is None:
      continue
    # Work in a padded window around the component (cheap for large images).
    pad = int(np.ceil(2 * size.radius)) + 3
    rows = slice(max(window[0].start - pad, 0), min(window[0].stop + pad, mask.shape[0]))
    cols = slice(max(window[1].start - pad, 0), min(window[1].stop + pad, mask.shape[1]))
    region = components[rows, cols] == k
    if single_solidity is not None and solidity(region) > single_solidity:
      pieces = [region]
    else:
      pieces = split_clump(region, smoothed[rows, cols], size, settings)
    for piece in pieces:
      labels[rows, cols][piece] = next_id
      next_id += 1
  return labels


def solidity(region: np.ndarray) -> float:
  """Area over convex-hull area of one region (scikit-image's `solidity`)."""
  from skimage import measure

  props = measure.regionprops(region.astype(np.uint8))
  return float(props[0].solidity) if props else 1.0
