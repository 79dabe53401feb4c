"""Point rendering primitives (PointRend, used by MORSE): sampling at continuous coordinates.

Coordinates are normalised to `[0, 1]` per spatial axis, **in the layout's axis order**
(`[..., (row, col)]` for `[B, H, W, C]`, `[..., (row, col, depth)]` for `[B, H, W, D, C]`), with
pixel `i`'s centre at `(i + 0.5) / size` — PyTorch `grid_sample(align_corners=False)`'s convention
(its grid is `2·coords − 1` with the axes reversed: `(x, y[, z]) = (col, row[, depth])`).

* `point_sample(features, coords)`: bilinear (trilinear in 3-D) interpolation with zero padding
  outside the image, or nearest neighbour (`round`-half-to-even, as `grid_sample(mode="nearest")`);
* `uncertainty(logits)`: the gap between the two largest logits, negated (largest = most
  uncertain); `−|logit|` for a one-channel sigmoid output;
* `uncertain_points_with_randomness`: PointRend's training points — draw `oversample · N` uniform
  points, keep the `importance · N` most uncertain, add `(1 − importance) · N` uniform ones;
* `uncertain_points_on_grid`: inference points — the `N` most uncertain pixel centres;
* `fourier_features`: MORSE's positional encoding `[sin, cos](2π · (2c − 1) · M)`.

Every shape is fixed by its arguments, so all of it lives inside one jitted step.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
  "fourier_features",
  "point_sample",
  "uncertain_points_on_grid",
  "uncertain_points_with_randomness",
  "uncertainty",
]


def _flat_spatial(features: jax.Array) -> tuple[jax.Array, tuple[int, ...]]:
  spatial = features.shape[1:-1]
  return features.reshape(features.shape[0], -1, features.shape[-1]), spatial


def _gather(flat: jax.Array, index: jax.Array) -> jax.Array:
  """`flat: [B, N, C]`, `index: [B, P]` → `[B, P, C]`."""
  return jnp.take_along_axis(flat, index[..., None], axis=1)


def point_sample(features: jax.Array, coords: jax.Array, mode: str = "bilinear") -> jax.Array:
  """Samples `features: [B, *S, C]` at `coords: [B, P, d]` in `[0, 1]` → `[B, P, C]`.

  Equals PyTorch `grid_sample(input, 2·coords[..., ::-1] − 1, align_corners=False,
  padding_mode="zeros")` with the channel axis moved (module docstring).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.nn.point_rendering import point_sample
    >>> image = jnp.array([[0.0, 1.0], [2.0, 3.0]])[None, :, :, None]  # [1, 2, 2, 1]
    >>> # The centre of the image is the mean of the four pixel centres around it.
    >>> float(point_sample(image, jnp.array([[[0.5, 0.5]]]))[0, 0, 0])
    1.5
    >>> # Pixel (1, 0)'s centre is at ((1 + 0.5) / 2, (0 + 0.5) / 2).
    >>> float(point_sample(image, jnp.array([[[0.75, 0.25]]]))[0, 0, 0])
    2.0

  Args:
    features: `[B, *S, C]` with d = len(S) spatial axes.
    coords: `[B, P, d]` normalised coordinates in the layout's axis order.
    mode: "bilinear" (d-linear) or "nearest".
  """
  flat, spatial = _flat_spatial(features)
  d = len(spatial)
  if coords.shape[-1] != d or coords.shape[0] != features.shape[0]:
    raise ValueError(f"coords {coords.shape} do not match features {features.shape}.")
  sizes = jnp.asarray(spatial, coords.dtype)
  position = coords * sizes - 0.5  # pixel-index space, centres at integers
  strides = np.cumprod((1,) + spatial[::-1])[:-1][::-1]
  if mode == "nearest":
    index = jnp.round(position).astype(jnp.int32)  # half to even, as torch's nearbyint
    inside = jnp.all((index >= 0) & (index < jnp.asarray(spatial)), axis=-1)
    flat_index = jnp.sum(jnp.clip(index, 0, jnp.asarray(spatial) - 1) * strides, axis=-1)
    return _gather(flat, flat_index) * inside[..., None].astype(flat.dtype)
  if mode != "bilinear":
    raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}.")
  low = jnp.floor(position)
  frac = position - low
  low = low.astype(jnp.int32)
  result = 0.0
  for corner in itertools.product((0, 1), repeat=d):
    offset = jnp.asarray(corner, jnp.int32)
    index = low + offset
    weight = jnp.prod(jnp.where(offset == 1, frac, 1.0 - frac), axis=-1)
    inside = jnp.all((index >= 0) & (index < jnp.asarray(spatial)), axis=-1)
    flat_index = jnp.sum(jnp.clip(index, 0, jnp.asarray(spatial) - 1) * strides, axis=-1)
    result = result + _gather(flat, flat_index) * (weight * inside)[..., None].astype(flat.dtype)
  return result


def uncertainty(logits: jax.Array) -> jax.Array:
  """`[..., K]` logits → `[...]`: `top2 − top1` (K > 1) or `−|logit|` (K = 1)."""
  if logits.shape[-1] == 1:
    return -jnp.abs(logits[..., 0])
  top = jax.lax.top_k(logits, 2)[0]
  return top[..., 1] - top[..., 0]


def uncertain_points_with_randomness(
  key: jax.Array,
  logits: jax.Array,
  num_points: int,
  oversample: float,
  importance: float,
) -> jax.Array:
  """PointRend's training points for `logits: [B, *S, K]` → coords `[B, num_points, d]`.

  `oversample · num_points` uniform candidates are scored by `uncertainty` of the bilinearly
  sampled logits; the `round(importance · num_points)` most uncertain are kept and the rest of the
  `num_points` are fresh uniform draws.
  """
  if oversample < 1 or not 0 <= importance <= 1:
    raise ValueError(
      f"oversample must be ≥ 1 and importance in [0, 1]; got {oversample}, {importance}."
    )
  batch, d = logits.shape[0], logits.ndim - 2
  candidates = int(num_points * oversample)
  keep = int(round(importance * num_points))
  key_candidates, key_random = jax.random.split(key)
  coords = jax.random.uniform(key_candidates, (batch, candidates, d))
  scores = uncertainty(point_sample(jax.lax.stop_gradient(logits), coords))
  _, top = jax.lax.top_k(scores, keep)
  chosen = jnp.take_along_axis(coords, top[..., None], axis=1)
  fresh = jax.random.uniform(key_random, (batch, num_points - keep, d))
  return jnp.concatenate([chosen, fresh], axis=1)


def uncertain_points_on_grid(
  uncertainty_map: jax.Array, num_points: int
) -> tuple[jax.Array, jax.Array]:
  """The `num_points` most uncertain pixels of `uncertainty_map: [B, *S]`.

  Returns:
    `(flat indices [B, N] int32 into the flattened S, centre coords [B, N, d])`.
  """
  spatial = uncertainty_map.shape[1:]
  num_points = min(int(num_points), int(np.prod(spatial)))
  _, index = jax.lax.top_k(uncertainty_map.reshape(uncertainty_map.shape[0], -1), num_points)
  unravelled = jnp.stack(jnp.unravel_index(index, spatial), axis=-1)
  coords = (unravelled.astype(jnp.float32) + 0.5) / jnp.asarray(spatial, jnp.float32)
  return index.astype(jnp.int32), coords


def fourier_features(coords: jax.Array, matrix: jax.Array) -> jax.Array:
  """`[sin, cos](2π·(2·coords − 1) @ matrix)`: `coords [..., d]`, `matrix [d, F]` → `[..., 2F]`."""
  projected = 2.0 * jnp.pi * ((2.0 * coords - 1.0) @ matrix)
  return jnp.concatenate([jnp.sin(projected), jnp.cos(projected)], axis=-1)
