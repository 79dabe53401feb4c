"""Fixed-size pixel sampling for contrastive losses: uniform, stratified (ARCO), antithetic.

A contrastive loss over pixel embeddings is estimated from a few sampled pixels (queries,
anchors) among many candidates; how they are drawn sets the estimate's variance. ARCO (You et
al., NeurIPS 2023) draws them by **stratified group sampling**: the candidates are split into
groups and each group gets an equal share of the draws. Every sampler here returns a fixed
number of draws with **weights** that make the weighted mean of any per-pixel quantity an
unbiased estimate of its mean over all candidates — the stratified estimator
`Σ_h (N_h / N) · mean of the n_h draws in group h`.

The groups are consecutive runs of equal count in an *ordering* of the candidates, so every
group holds ~N / G candidates and gets n / G draws (proportional allocation: never more variance
than uniform sampling, up to rounding) — ARCO's code cuts the index list this way
(`grid_monte_carlo_sample`), its paper means spatial strata. `mode`:

* `"uniform"`: one group — plain sampling with replacement.
* `"spatial"` (default): candidates ordered by the cell of a `grid × grid` (× grid) partition of
  the image, then in raster order inside a cell, so each group is a spatially compact patch.
* `"index"`: candidates in raster order (ARCO's code: groups are bands of rows).

**Antithetic** draws come in pairs inside a group: one at quantile `u` of the group and its
mirror at `1 − u`, so the two are negatively correlated. Draws per group must then be even.

Shapes never depend on the data: groups without candidates (fewer candidates than groups) give
zero-weight draws, and no candidate at all gives all-zero weights (the caller's loss is 0). All
functions are pure `jax.numpy`, fixed-shape and jittable; `vmap` them over images or classes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MODES = ("uniform", "spatial", "index")


def sampling_order(
  candidates: jax.Array, mode: str, grid: int = 4, batch_dims: int = 0
) -> jax.Array:
  """The sort key of every pixel: candidates in `mode`'s order, the rest last.

  Args:
    candidates: `[*B, *S]` bool, the pixels that may be drawn (2-D or 3-D images).
    mode: "uniform", "spatial" or "index" (module docstring).
    grid: cells per spatial axis of the "spatial" partition.
    batch_dims: leading axes that are not spatial (a batch of images): "spatial" orders by
      cell first, so a group gathers the same region of every image.

  Returns:
    `[*B, *S]` int32 keys; `argsort` of the flattened keys lists the candidates in order.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.pixel_sampling import sampling_order
    >>> key = sampling_order(jnp.ones((4, 4), bool), "spatial", grid=2)
    >>> jnp.argsort(key.reshape(-1))[:8].tolist()  # the top-left 2×2 cell, then the top-right
    [0, 1, 4, 5, 2, 3, 6, 7]
  """
  if mode not in MODES:
    raise ValueError(f"Unknown sampling mode {mode!r}; expected one of {MODES}.")
  shape = candidates.shape
  size = candidates.size
  raster = jnp.arange(size, dtype=jnp.int32).reshape(shape)
  key = raster
  spatial = range(batch_dims, len(shape))
  if mode == "spatial":
    cells = jnp.zeros(shape, jnp.int32)
    for axis in spatial:
      n = shape[axis]
      cell = (jnp.arange(n) * grid) // n  # `grid` near-equal cells along this axis
      cells = cells * grid + cell.reshape([n if a == axis else 1 for a in range(len(shape))])
    key = cells * size + raster
  big = (grid ** len(spatial) + 1) * size
  return jnp.where(candidates, key, big).astype(jnp.int32)


def sample_pixels(
  key: jax.Array,
  candidates: jax.Array,
  num_samples: int,
  mode: str = "spatial",
  grid: int = 4,
  antithetic: bool = False,
  batch_dims: int = 0,
) -> tuple[jax.Array, jax.Array]:
  """Draws `num_samples` candidate pixels, stratified, with estimator weights.

  Args:
    key: PRNG key.
    candidates: `[*B, *S]` bool (`batch_dims` leading batch axes, then the image).
    num_samples: draws n; with "spatial" / "index" a multiple of the `grid²` groups (twice that
      with `antithetic`).
    mode, grid: the ordering (`sampling_order`); "spatial" / "index" cut it into `grid²` groups.
    antithetic: mirrored pairs `u`, `1 − u` inside each group.
    batch_dims: see `sampling_order`.

  Returns:
    `(indices [n] int32 into the flattened candidates, weights [n] float32)`; the weights are
    ≥ 0 and sum to 1 when there is any candidate (else all 0). `Σ w_i f(x_i)` estimates the
    mean of `f` over the candidates without bias.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from mlsup_jax.losses.pixel_sampling import sample_pixels
    >>> mask = jnp.zeros((8, 8), bool).at[:, :2].set(True)  # 16 candidates, left columns
    >>> idx, w = sample_pixels(jax.random.key(0), mask, 16, "spatial", grid=2)
    >>> bool(jnp.all(mask.reshape(-1)[idx])), round(float(w.sum()), 4)
    (True, 1.0)
  """
  groups = 1 if mode == "uniform" else grid * grid
  per_group = num_samples // groups
  if per_group * groups != num_samples or per_group == 0:
    raise ValueError(
      f"num_samples={num_samples} must be a positive multiple of the {groups} groups."
    )
  if antithetic and per_group % 2:
    raise ValueError(f"Antithetic pairs need an even number of draws per group, got {per_group}.")
  order = jnp.argsort(sampling_order(candidates, mode, grid, batch_dims).reshape(-1))
  count = jnp.sum(candidates)
  bounds = (jnp.arange(groups + 1) * count) // groups  # equal-count runs of the ordering
  start, sizes = bounds[:-1], jnp.diff(bounds)
  if antithetic:
    u = jax.random.uniform(key, (groups, per_group // 2))
    u = jnp.concatenate([u, 1.0 - u], axis=1)
  else:
    u = jax.random.uniform(key, (groups, per_group))
  offset = jnp.minimum(jnp.floor(u * sizes[:, None]), jnp.maximum(sizes[:, None] - 1, 0))
  indices = order[(start[:, None] + offset.astype(start.dtype)).reshape(-1)]
  weights = sizes / jnp.maximum(count, 1) / per_group
  weights = jnp.repeat(weights, per_group)
  return indices.astype(jnp.int32), weights.astype(jnp.float32)
