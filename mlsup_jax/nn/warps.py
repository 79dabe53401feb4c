"""Differentiable image warps on the device: bilinear sampling and random thin-plate splines.

ARCO's equivariance term compares the prediction of a warped image with the warped prediction,
inside the jitted step, so the warp is `jax.numpy`: `bilinear_sample` reads an image at
continuous pixel coordinates (pixel `(i, j)` centred at `(i + 0.5, j + 0.5)`, as PyTorch's
`grid_sample(align_corners=False)`; outside the image the value is 0), and `random_tps_coords`
draws a thin-plate-spline displacement field (ARCO's TPS: control points on a regular grid moved
by `N(0, σ²)` in normalised `[−1, 1]` coordinates, σ 0.01 in the authors' code). `cutmix_boxes`
and `mix` paste one random box of the next image into each image (CutMix, fixed shapes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def bilinear_sample(image: jax.Array, coords: jax.Array) -> jax.Array:
  """`image [B, H, W, C]` read at `coords [B, H', W', 2]` (row, column; pixel units, centres at
  `k + 0.5`) → `[B, H', W', C]`; zero outside the image.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.nn.warps import bilinear_sample
    >>> image = jnp.arange(4.0).reshape(1, 2, 2, 1)  # [[0, 1], [2, 3]]
    >>> at = jnp.array([[[[0.5, 0.5], [1.0, 1.0], [1.5, 1.5]]]])  # a centre, between, a centre
    >>> bilinear_sample(image, at)[0, 0, :, 0].tolist()
    [0.0, 1.5, 3.0]
  """
  _, height, width, _ = image.shape
  row = coords[..., 0] - 0.5
  col = coords[..., 1] - 0.5
  r0, c0 = jnp.floor(row), jnp.floor(col)
  fr, fc = row - r0, col - c0
  r0, c0 = r0.astype(jnp.int32), c0.astype(jnp.int32)
  batch = jnp.arange(image.shape[0]).reshape((-1,) + (1,) * (coords.ndim - 2))

  def read(r, c):
    inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
    value = image[batch, jnp.clip(r, 0, height - 1), jnp.clip(c, 0, width - 1)]
    return jnp.where(inside[..., None], value, 0.0)

  return (
    read(r0, c0) * ((1 - fr) * (1 - fc))[..., None]
    + read(r0, c0 + 1) * ((1 - fr) * fc)[..., None]
    + read(r0 + 1, c0) * (fr * (1 - fc))[..., None]
    + read(r0 + 1, c0 + 1) * (fr * fc)[..., None]
  )


def _tps_kernel(r2: jax.Array) -> jax.Array:
  """U(r) = r² log r² (0 at r = 0)."""
  return jnp.where(r2 > 0, r2 * jnp.log(jnp.maximum(r2, 1e-12)), 0.0)


def tps_map(source: jax.Array, target: jax.Array, points: jax.Array) -> jax.Array:
  """The thin-plate spline through `source → target` control points, evaluated at `points`.

  Args:
    source, target: `[N, 2]` control points (normalised coordinates).
    points: `[M, 2]`.

  Returns:
    `[M, 2]`: where each point maps (exact at the control points, affine far from them).
  """
  n = source.shape[0]
  kernel = _tps_kernel(jnp.sum((source[:, None] - source[None]) ** 2, -1))
  affine = jnp.concatenate([jnp.ones((n, 1)), source], axis=1)  # [N, 3]
  system = jnp.block([[kernel, affine], [affine.T, jnp.zeros((3, 3))]])
  rhs = jnp.concatenate([target, jnp.zeros((3, 2))], axis=0)
  coefficients = jnp.linalg.solve(system, rhs)  # [N + 3, 2]
  u = _tps_kernel(jnp.sum((points[:, None] - source[None]) ** 2, -1))  # [M, N]
  basis = jnp.concatenate([u, jnp.ones((points.shape[0], 1)), points], axis=1)
  return basis @ coefficients


def random_tps_coords(
  key: jax.Array, batch: int, height: int, width: int, grid: int = 3, sigma: float = 0.01
) -> jax.Array:
  """Per image, sampling coordinates `[B, H, W, 2]` of a random thin-plate-spline warp.

  The output pixel at normalised position `p` reads the input at `T(p)`, where `T` maps the
  `grid × grid` control points `c` (uniform in `[−1, 1]²`) to `c + N(0, σ²)`. σ = 0 is the
  identity.
  """
  axis = jnp.linspace(-1.0, 1.0, grid)
  source = jnp.stack(jnp.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
  rows = (jnp.arange(height) + 0.5) / height * 2 - 1
  cols = (jnp.arange(width) + 0.5) / width * 2 - 1
  points = jnp.stack(jnp.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
  moves = sigma * jax.random.normal(key, (batch,) + source.shape)
  mapped = jax.vmap(lambda m: tps_map(source, source + m, points))(moves)  # [B, H·W, 2]
  scale = jnp.asarray([height, width], jnp.float32)
  return ((mapped + 1.0) / 2.0 * scale).reshape(batch, height, width, 2)


def cutmix_boxes(rng: jax.Array, batch: int, spatial, low: float, high: float) -> jax.Array:
  """`[B, *S]` float masks, 1 inside one random box per image (area fraction in [low, high])."""
  area_rng, centre_rng = jax.random.split(rng)
  area = jax.random.uniform(area_rng, (batch,), minval=low, maxval=high)
  side = area ** (1.0 / len(spatial))  # the box's side as a fraction of each axis
  centre = jax.random.uniform(centre_rng, (batch, len(spatial)))
  inside = jnp.ones((batch, *spatial), bool)
  for axis, n in enumerate(spatial):
    coord = (jnp.arange(n, dtype=jnp.float32) + 0.5) / n
    shape = [1] * len(spatial)
    shape[axis] = n
    coord = coord.reshape(shape)[None]
    lo = (centre[:, axis] - side / 2).reshape((-1,) + (1,) * len(spatial))
    hi = (centre[:, axis] + side / 2).reshape((-1,) + (1,) * len(spatial))
    inside = inside & (coord >= lo) & (coord < hi)
  return inside.astype(jnp.float32)


def mix(x: jax.Array, box: jax.Array) -> jax.Array:
  """`x [B, *S, …]` with the inside of `box [B, *S]` taken from the next image (i + 1 mod B)."""
  other = jnp.roll(x, -1, axis=0)
  box = box.reshape(box.shape + (1,) * (x.ndim - box.ndim))
  return box * other + (1.0 - box) * x
