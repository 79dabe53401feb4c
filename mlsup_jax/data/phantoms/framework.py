"""Shared building blocks for deterministic synthetic phantoms.

* Seeding: `case_rng(seed, split, index)` gives each case its own independent generator, so a
  case never depends on which other cases were generated before it.
* Textures: `fractal_noise` (power spectrum ∝ 1/f^beta, the classic model of anatomical
  background such as breast parenchyma) and `smooth_random_field` (Gaussian-correlated noise),
  both synthesised by FFT in any number of dimensions.
* Curves: `random_walk_curve` (a walk whose curvature is itself a smooth random signal) and
  `spline_curve` (a cubic spline through control points), both returned as densely and
  uniformly sampled polylines so per-point attributes (width, contrast, …) can ride along.
* Rasterisation: `polyline_distance` (exact distance to the polyline and the index of the
  nearest vertex: one Euclidean distance transform on a cropped grid, refined by a local search
  over the nearby segments), `rasterize_curve` (soft and binary masks of a tube of varying
  width), `projected_tube_profile` (the projected thickness of a solid or hollow cylinder, e.g.
  for radiographs) and `render_gaussian_blobs` (punctate spots).
* `gaussian_blur`, `smoothstep`, and `PhantomSource`: the random-access base class with a
  bounded, thread-safe per-index cache; `LabelledPhantomSource` adds a class per case drawn
  from its own stream (`class_stream`), so classes are known without rendering.

Coordinates are array-index order throughout: a 2-D point is `(row, col)`.
"""

from __future__ import annotations

import abc
import collections
import functools
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage, signal

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}


def split_id(split: str) -> int:
  """The integer id of a split name (train=0, val=1, test=2).

  Raises:
    ValueError: for an unknown split.
  """
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; expected one of {', '.join(SPLITS)}.")
  return SPLITS[split]


def case_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The generator of one case: `np.random.default_rng([seed, split_id, index])`.

  Different `(seed, split, index)` triples give statistically independent streams, so splits
  are disjoint and every case is reproducible on its own.
  """
  return np.random.default_rng([int(seed), split_id(split), int(index)])


def _frequency_radius(
  shape: tuple[int, ...], stretch: tuple[float, ...] | None = None
) -> np.ndarray:
  """|f| in cycles/pixel on the `rfftn` grid of `shape`: `[*shape[:-1], shape[-1] // 2 + 1]`.

  With `stretch`, axis k's frequencies are multiplied by `stretch[k]` (an anisotropic metric).
  """
  axes = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
  if stretch is not None:
    axes = [a * float(k) for a, k in zip(axes, stretch, strict=True)]
  grids = np.meshgrid(*axes, indexing="ij", sparse=True)
  return np.sqrt(sum(g * g for g in grids))


@functools.lru_cache(maxsize=64)
def _fractal_amplitude(shape, beta, max_wavelength, min_wavelength, stretch) -> np.ndarray:
  f = _frequency_radius(shape, stretch)
  with np.errstate(divide="ignore"):
    amplitude = np.where(f > 0, f ** (-beta / 2.0), 0.0)
  if max_wavelength is not None:
    amplitude *= 1.0 - np.exp(-((f * max_wavelength) ** 2))
  amplitude *= np.exp(-((f * min_wavelength / 2.0) ** 4))
  return _frozen(amplitude)


@functools.lru_cache(maxsize=256)
def _gaussian_amplitude(shape, correlation_length) -> np.ndarray:
  amplitude = np.exp(-2.0 * (math.pi * _frequency_radius(shape) * correlation_length) ** 2)
  amplitude.flat[0] = 0.0
  return _frozen(amplitude)


def _frozen(amplitude: np.ndarray) -> np.ndarray:
  out = amplitude.astype(np.float32)
  out.flags.writeable = False  # Shared by every caller through the cache.
  return out


def _field_from_amplitude(rng: np.random.Generator, shape, amplitude: np.ndarray) -> np.ndarray:
  spectrum = np.empty(amplitude.shape, np.complex64)
  spectrum.real = rng.standard_normal(amplitude.shape, dtype=np.float32) * amplitude
  spectrum.imag = rng.standard_normal(amplitude.shape, dtype=np.float32) * amplitude
  field = np.fft.irfftn(spectrum, s=shape, axes=tuple(range(len(shape))))
  field -= field.mean()
  std = field.std()
  return (field / std if std > 0 else field).astype(np.float32, copy=False)


def fractal_noise(
  rng: np.random.Generator,
  shape: Sequence[int],
  beta: float = 3.0,
  max_wavelength: float | None = None,
  min_wavelength: float = 2.0,
  stretch: Sequence[float] | None = None,
) -> np.ndarray:
  """Gaussian noise with power spectrum ∝ 1/|f|^beta, normalised to zero mean and unit std.

  beta ≈ 3 reproduces the power law measured on mammographic parenchyma; smaller beta is rougher.
  The amplitude spectrum is cached per parameter set, so repeated calls only cost the random
  draws and one inverse FFT.

  Args:
    rng: the case generator.
    shape: output shape (any number of dimensions; the last one is the rfft axis).
    beta: spectral exponent.
    max_wavelength: if given, wavelengths longer than this (in pixels) are smoothly suppressed,
      which removes the image-wide gradients that dominate a 1/f^beta field.
    min_wavelength: wavelengths shorter than this are smoothly suppressed.
    stretch: optional per-axis elongation factors: structures come out `stretch[k]` times longer
      along axis k (e.g. `(1, 3)` for a texture streaked along the columns).

  Returns:
    `[*shape]` float32, mean 0, std 1 (periodic at the borders).
  """
  shape = tuple(int(n) for n in shape)
  amplitude = _fractal_amplitude(
    shape,
    float(beta),
    None if max_wavelength is None else float(max_wavelength),
    float(min_wavelength),
    None if stretch is None else tuple(float(k) for k in stretch),
  )
  return _field_from_amplitude(rng, shape, amplitude)


def smooth_random_field(
  rng: np.random.Generator, shape: Sequence[int], correlation_length: float
) -> np.ndarray:
  """White noise low-passed by a Gaussian of std `correlation_length` pixels (via FFT).

  Args:
    rng: the case generator.
    shape: output shape (any number of dimensions, e.g. `(n,)` for a signal along a curve).
    correlation_length: std of the Gaussian smoothing kernel, in pixels.

  Returns:
    `[*shape]` float32, mean 0, std 1 (periodic at the borders).
  """
  shape = tuple(int(n) for n in shape)
  amplitude = _gaussian_amplitude(shape, float(correlation_length))
  return _field_from_amplitude(rng, shape, amplitude)


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


def gaussian_blur(image: np.ndarray, sigma: float | Sequence[float]) -> np.ndarray:
  """Gaussian blur with edge replication (float32, kernel truncated at 3 sigma)."""
  return ndimage.gaussian_filter(np.asarray(image, np.float32), sigma, mode="nearest", truncate=3.0)


def smoothstep(x: np.ndarray, low: float, high: float) -> np.ndarray:
  """The cubic Hermite step: 0 below `low`, 1 above `high`, smooth in between."""
  t = np.clip((np.asarray(x, np.float32) - low) / (high - low), 0.0, 1.0)
  return t * t * (3.0 - 2.0 * t)


class PhantomSource(abc.ABC):
  """A random-access source of deterministic synthetic cases.

  Subclasses implement `generate(rng, index)`; case `index` of a split is always generated from
  `case_rng(seed, split, index)`. Generated cases are kept in a bounded least-recently-used cache
  (thread-safe, not pickled), so repeated reads are free; every read returns fresh copies of the
  arrays, so callers may modify them.

  Args:
    split: "train", "val" or "test" (disjoint case streams).
    num_cases: number of cases, ≥ 1.
    seed: non-negative base seed.
    cache_size: maximum number of cached cases (0 disables caching).

  Raises:
    ValueError: on an unknown split, `num_cases` < 1, a negative seed or `cache_size` < 0.
  """

  def __init__(self, split: str, num_cases: int, seed: int, cache_size: int = 128):
    split_id(split)
    if int(num_cases) < 1:
      raise ValueError(f"num_cases must be ≥ 1, got {num_cases}.")
    if int(seed) < 0:
      raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    if int(cache_size) < 0:
      raise ValueError(f"cache_size must be ≥ 0, got {cache_size}.")
    self.split = split
    self.num_cases = int(num_cases)
    self.seed = int(seed)
    self.cache_size = int(cache_size)
    self._cache: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()
    self._lock = threading.Lock()

  @abc.abstractmethod
  def generate(self, rng: np.random.Generator, index: int) -> dict[str, Any]:
    """Generates case `index` from its own generator `rng`; returns a dict of numpy arrays."""

  def __len__(self) -> int:
    return self.num_cases

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {k: np.array(v, copy=True) for k, v in self.case(self._check_index(index)).items()}

  def _check_index(self, index: int, length: int | None = None) -> int:
    length = len(self) if length is None else length
    index = int(index)
    if not -length <= index < length:
      raise IndexError(f"Index {index} out of range for {type(self).__name__} of length {length}.")
    return index % length

  def case(self, index: int) -> dict[str, Any]:
    """The cached, read-only arrays of case `index` in `[0, num_cases)` (generated on a miss)."""
    index = self._check_index(index, self.num_cases)
    with self._lock:
      if index in self._cache:
        self._cache.move_to_end(index)
        return self._cache[index]
    result = self.generate(case_rng(self.seed, self.split, index), index)
    for value in result.values():
      if isinstance(value, np.ndarray):
        value.flags.writeable = False  # Shared by every later read through the cache.
    if self.cache_size:
      with self._lock:
        self._cache[index] = result
        self._cache.move_to_end(index)
        while len(self._cache) > self.cache_size:
          self._cache.popitem(last=False)
    return result

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_cache"] = collections.OrderedDict()
    state.pop("_lock")
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()


# Tag of the class stream: 4 seed words, so it never coincides with a `case_rng` stream.
_CLASS_STREAM = 0x434C4153
# Memory for cached cases of a `LabelledPhantomSource` (float32 image: 4 bytes a pixel).
LABELLED_CACHE_BYTES = 128 * 2**20


def class_stream(seed: int, split: str, num_cases: int, weights: Sequence[float]) -> np.ndarray:
  """The class of cases `0 … num_cases − 1`, drawn without rendering anything.

  Case i's class depends only on (seed, split, i) and `weights`: the uniforms come from one
  stream per (seed, split), read in order, so a longer source extends a shorter one.

  Returns:
    `[num_cases]` int32 class indices into `weights`.
  """
  uniforms = np.random.default_rng([int(seed), split_id(split), _CLASS_STREAM, 1]).random(
    int(num_cases)
  )
  cumulative = np.cumsum(np.asarray(weights, np.float64))
  cumulative /= cumulative[-1]
  classes = np.searchsorted(cumulative, uniforms, side="right")
  return np.minimum(classes, len(cumulative) - 1).astype(np.int32)


class LabelledPhantomSource(PhantomSource):
  """A phantom of square grey images, each case of one class of `CLASS_NAMES`.

  Subclasses set `CLASS_NAMES` and implement `render(rng, class_id) -> [S, S]`. Example:
  `image: [S, S, 1]` float32 and `class_id: []` int32, an index into `CLASS_NAMES`.

  Args:
    split: "train", "val" or "test"; each split draws disjoint cases.
    num_cases: number of cases in the split.
    seed: non-negative base seed.
    image_size: S, ≥ `MIN_IMAGE_SIZE`.
    class_weights: relative frequency of each class (normalised; zeros allowed, not all zero).
    cache_size: maximum number of cached cases; None: as many as fit in 128 MiB.

  Attributes:
    class_ids: `[num_cases]` int32, the class of every case (known without rendering).
    class_names: `CLASS_NAMES`.

  Raises:
    ValueError: on an unknown split or an invalid count, seed, size or weights.
  """

  CLASS_NAMES: tuple[str, ...] = ()
  MIN_IMAGE_SIZE = 32

  def __init__(
    self,
    split: str,
    num_cases: int,
    seed: int,
    image_size: int,
    class_weights: Sequence[float],
    cache_size: int | None = None,
  ):
    names = self.CLASS_NAMES
    if int(image_size) < self.MIN_IMAGE_SIZE:
      raise ValueError(f"image_size must be ≥ {self.MIN_IMAGE_SIZE}, got {image_size}.")
    weights = np.asarray(class_weights, np.float64)
    if weights.shape != (len(names),):
      raise ValueError(
        f"class_weights needs {len(names)} entries ({', '.join(names)}), got {list(class_weights)}."
      )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
      raise ValueError(
        f"class_weights must be finite, non-negative and not all zero, got {list(class_weights)}."
      )
    if cache_size is None:
      cache_size = max(1, min(int(num_cases), LABELLED_CACHE_BYTES // (4 * int(image_size) ** 2)))
    super().__init__(split, num_cases, seed, cache_size=cache_size)
    self.image_size = int(image_size)
    self.class_weights = tuple(float(w) for w in weights / weights.sum())
    self.class_names = names
    self.class_ids = class_stream(self.seed, split, self.num_cases, self.class_weights)
    self.class_ids.flags.writeable = False
    # Pixel centres in [-1, 1] (row, col), shared by every case.
    q = ((np.arange(self.image_size, dtype=np.float32) + 0.5) / self.image_size) * 2.0 - 1.0
    self._q_rows, self._q_cols = np.meshgrid(q, q, indexing="ij")

  def generate(self, rng: np.random.Generator, index: int) -> dict[str, np.ndarray]:
    """Case `index`: its image rendered for its class."""
    class_id = int(self.class_ids[index])
    image = self.render(rng, class_id)
    return {"image": image[..., None], "class_id": np.asarray(class_id, np.int32)}

  def check_class_id(self, class_id: int) -> int:
    """`class_id` as an int, or ValueError when it is not a class of `CLASS_NAMES`."""
    if not 0 <= int(class_id) < len(self.CLASS_NAMES):
      raise ValueError(f"class_id must be in [0, {len(self.CLASS_NAMES)}), got {class_id}.")
    return int(class_id)

  @abc.abstractmethod
  def render(self, rng: np.random.Generator, class_id: int) -> np.ndarray:
    """One `[S, S]` float32 image of class `class_id` from `rng`."""
