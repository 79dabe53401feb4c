"""The outer OTDD problem: debiased Sinkhorn divergence on the label-augmented ½-cost.

    C((x, y), (x', y')) = λ_x ‖x − x'‖² / 2 + λ_y W[y, y'] / 2,
    S_ε = OT_ε(A, B) − ½ OT_ε(A, A) − ½ OT_ε(B, B),

with ε absolute in units of C (microsoft/otdd's convention). ott-jax's `sinkhorn_divergence`
wrapper is not used: it reports diverged accelerated solves as converged and cannot re-run
them (see `sinkhorn_solver`). Each term is its own jitted program instead, so A–A and B–B share
one compilation when both sides have the same padded size, and OT(B, B) is not recomputed
when B is A.

Costs are dense `[n, m]` matrices (3 × 400 MB at 10k points per side, float32), or recomputed
blockwise each iteration with `batch_size` rows per block, each block reduced over the other
side in tiles of `COLUMN_TILE` columns (`streaming_lse`: temporaries of batch_size × tile, in
cache whatever m is; memory O(m) for the potentials and points). `auto_batch_size` picks dense
up to 10240² entries per matrix and blocks above.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from ott.geometry import costs, geometry, pointcloud

from mlsup_jax.ot.label_costs import squared_distances
from mlsup_jax.ot.sinkhorn_solver import OTSolve, SinkhornSettings, solve_ot


@jtu.register_pytree_node_class
class LabelAugmentedCost(costs.CostFn):
  """OTDD's ground cost on points z = [x, label index] (the index stored as a float).

  Args:
    label_costs: `[K, K]` W_2² between labels.
    lambda_x, lambda_y: weights of the feature and label terms.
  """

  def __init__(self, label_costs, lambda_x, lambda_y):
    self.label_costs, self.lambda_x, self.lambda_y = label_costs, lambda_x, lambda_y

  def __call__(self, x, y):
    return self.all_pairs(x[None], y[None])[0, 0]

  def all_pairs(self, x, y):
    # One matmul for both terms: [−2 λ_x x, λ_y W[y_i, :]] · [x', one-hot(y')]ᵀ = −2 λ_x x·x' +
    # λ_y W[y_i, y'_j], then the norms added. Not ott-jax's double vmap of __call__, and no
    # [n, m] gather of W (XLA's CPU gathers made the online path ~20× slower); one pass over the
    # [n, m] block instead of three (measured 5–35 % faster per tiled block than two matmuls).
    features_x, features_y = x[:, :-1], y[:, :-1]
    num_labels = self.label_costs.shape[0]
    rows = self.label_costs[x[:, -1].astype(jnp.int32)]
    one_hot = jax.nn.one_hot(y[:, -1].astype(jnp.int32), num_labels, dtype=rows.dtype)
    lhs = jnp.concatenate([-2.0 * self.lambda_x * features_x, self.lambda_y * rows], axis=1)
    rhs = jnp.concatenate([features_y, one_hot], axis=1)
    inner = jnp.matmul(lhs, rhs.T, precision=jax.lax.Precision.HIGHEST)
    norms = jnp.sum(features_x**2, -1)[:, None] + jnp.sum(features_y**2, -1)[None, :]
    return 0.5 * jnp.maximum(self.lambda_x * norms + inner, 0.0)

  def tree_flatten(self):  # noqa: D102
    return (self.label_costs, self.lambda_x, self.lambda_y), None


COLUMN_TILE = 512  # A [256, 512] float32 tile is 512 KiB: its temporaries stay in L2.


def streaming_lse(cost_tile, block_potential, points, potentials, eps, tile=COLUMN_TILE):
  """ε log Σ_j exp((p_i + q_j − C_ij) / ε) for each point i of a block, over all points j, in
  tiles of `tile` columns with a running maximum (the online log-sum-exp): the `[b, m]` cost
  block is never materialised, so its temporaries stay in cache whatever m is.

  Args:
    cost_tile: `(points_tile [t, D]) → [b, t]` costs between the block and a tile of points.
    block_potential: `[b]` potentials p of the block.
    points: `[m, D]` the points summed over; potentials: `[m]` their potentials q (−inf allowed:
      zero-weight points).
    eps: ε.
    tile: columns per tile (the last tile is padded with −inf potentials).

  Returns:
    `[b]`; −inf where every term is −inf (as `jax.nn.logsumexp`).

  Example:
    >>> x = jnp.arange(6.0)[:, None]
    >>> cost = lambda y: (x[:2] - y.T) ** 2
    >>> out = streaming_lse(cost, jnp.zeros(2), x, jnp.zeros(6), 1.0, tile=4)
    >>> ref = jax.nn.logsumexp(-((x[:2] - x.T) ** 2), axis=1)
    >>> bool(jnp.allclose(out, ref))
    True
  """
  size = points.shape[0]
  tile = min(tile, size)
  tiles = -(-size // tile)
  pad = tiles * tile - size
  points = jnp.pad(points, ((0, pad), (0, 0)))
  potentials = jnp.pad(potentials, (0, pad), constant_values=-jnp.inf)

  def accumulate(carry, tile_points_potentials):
    running_max, running_sum = carry
    tile_points, tile_potentials = tile_points_potentials
    z = (block_potential[:, None] + tile_potentials[None, :] - cost_tile(tile_points)) / eps
    new_max = jnp.maximum(running_max, jnp.max(z, axis=1))
    shift = jnp.where(jnp.isfinite(new_max), new_max, 0.0)  # all −inf so far: sums stay 0
    running_sum = running_sum * jnp.exp(running_max - shift) + jnp.sum(
      jnp.exp(z - shift[:, None]), axis=1
    )
    return (new_max, running_sum), None

  start = (jnp.full_like(block_potential, -jnp.inf), jnp.zeros_like(block_potential))
  (running_max, running_sum), _ = jax.lax.scan(
    accumulate,
    start,
    (points.reshape(tiles, tile, -1), potentials.reshape(tiles, tile)),
  )
  shift = jnp.where(jnp.isfinite(running_max), running_max, 0.0)
  return eps * (shift + jnp.log(running_sum))


@jtu.register_pytree_node_class
class BlockwisePointCloud(pointcloud.PointCloud):
  """`PointCloud` whose online log-sum-exp kernel runs in blocks of `batch_size` rows (or
  columns), each reduced over the other side in tiles of `COLUMN_TILE` (`streaming_lse`).

  ott-jax 0.6.0's own online path calls `jax.interpreters.batching.is_vmappable`, which JAX
  0.10 removed (AttributeError); this uses `jax.lax.map(..., batch_size=...)` instead. Only
  what Sinkhorn uses is supported (`vec=None`). The column tiles keep a block's temporaries in
  cache: one `[256, m]` block at m = 25 000 is 25 MB per temporary (measured: 3× slower per
  entry than at 10 000 without the tiles).
  """

  def apply_lse_kernel(self, f, g, eps, vec=None, axis=0):  # noqa: D102
    if not self.is_online:
      return super().apply_lse_kernel(f, g, eps, vec, axis)
    if vec is not None:
      raise NotImplementedError("BlockwisePointCloud supports vec=None only.")
    scale = self.inv_scale_cost

    def reduce_columns(args):  # Rows i of a block: ε log Σ_j exp((f_i + g_j − C_ij) / ε).
      x, f_i = args
      cost = lambda y: self.cost_fn.all_pairs(x, y) * scale  # noqa: E731
      return streaming_lse(cost, f_i, self.y, g, eps, tile=COLUMN_TILE)

    def reduce_rows(args):  # Columns j of a block: ε log Σ_i exp((f_i + g_j − C_ij) / ε).
      y, g_j = args
      cost = lambda x: self.cost_fn.all_pairs(x, y).T * scale  # noqa: E731
      return streaming_lse(cost, g_j, self.x, f, eps, tile=COLUMN_TILE)

    def blockwise(reduce, points, potential):
      # One [batch, tile] cost block per scan step (matmuls). A size that does not split into
      # whole blocks is padded (the padded rows' results are dropped): lax.map's own batching
      # of single rows would vmap the cost into batched matrix-vector products (measured: 2×
      # slower per entry at 25 000 points).
      size = points.shape[0]
      blocks = -(-size // self.batch_size)
      pad = blocks * self.batch_size - size
      points = jnp.pad(points, ((0, pad), (0, 0)))
      potential = jnp.pad(potential, (0, pad))
      out = jax.lax.map(
        reduce, (points.reshape(blocks, self.batch_size, -1), potential.reshape(blocks, -1))
      )
      return out.reshape(-1)[:size]

    if axis == 1:
      res, remove = blockwise(reduce_columns, self.x, f), f
    else:
      res, remove = blockwise(reduce_rows, self.y, g), g
    return res - jnp.where(jnp.isfinite(remove), remove, 0.0), jnp.ones_like(res)


DENSE_MAX_ENTRIES = 10240 * 10240  # 400 MiB per float32 cost matrix; 3 matrices in flight.
ONLINE_BATCH_SIZE = 256


def auto_batch_size(n: int, m: int) -> int | None:
  """None (dense costs) if the largest of the `[n, m]`, `[n, n]`, `[m, m]` cost matrices has at
  most `DENSE_MAX_ENTRIES` entries, else `ONLINE_BATCH_SIZE` (blockwise online costs).

  Dense is faster while it fits (no cost recomputation each iteration); above ~10k points per
  side it needs GiBs (100k per side: 40 GB per matrix), so costs are recomputed in blocks.

  Example:
    >>> auto_batch_size(10_000, 10_000), auto_batch_size(50_000, 1_000)
    (None, 256)
  """
  return None if max(n, m) ** 2 <= DENSE_MAX_ENTRIES else ONLINE_BATCH_SIZE


def _geometry(x, lx, y, ly, label_costs, lambda_x, lambda_y, epsilon, batch_size):
  if batch_size is None:
    cost = 0.5 * (lambda_x * squared_distances(x, y) + lambda_y * label_costs[lx][:, ly])
    return geometry.Geometry(cost_matrix=cost, epsilon=epsilon)
  zx = jnp.concatenate([x, lx[:, None].astype(x.dtype)], axis=1)
  zy = jnp.concatenate([y, ly[:, None].astype(y.dtype)], axis=1)
  cost_fn = LabelAugmentedCost(label_costs, lambda_x, lambda_y)
  return BlockwisePointCloud(zx, zy, cost_fn=cost_fn, batch_size=batch_size, epsilon=epsilon)


@functools.partial(jax.jit, static_argnames=("settings", "batch_size", "accelerated"))
def cross_ot(
  xa,
  ya,
  wa,
  xb,
  yb,
  wb,
  label_costs,
  lambda_x,
  lambda_y,
  epsilon,
  settings,
  batch_size,
  accelerated,
) -> OTSolve:
  """OT_ε(A, B) on the augmented cost (arguments as `label_augmented_divergence`)."""
  geom = _geometry(xa, ya, xb, yb, label_costs, lambda_x, lambda_y, epsilon, batch_size)
  return solve_ot(geom, wa, wb, settings, accelerated=accelerated)


@functools.partial(jax.jit, static_argnames=("settings", "batch_size"))
def self_ot(x, y, w, label_costs, lambda_x, lambda_y, epsilon, settings, batch_size) -> OTSolve:
  """OT_ε(A, A) on the augmented cost, with symmetric (averaged) updates."""
  geom = _geometry(x, y, x, y, label_costs, lambda_x, lambda_y, epsilon, batch_size)
  return solve_ot(geom, w, w, settings, symmetric=True)


def label_augmented_divergence(
  xa,
  ya,
  wa,
  xb,
  yb,
  wb,
  label_costs,
  *,
  lambda_x: float,
  lambda_y: float,
  epsilon: float,
  settings: SinkhornSettings,
  batch_size: int | None = None,
  same: bool = False,
) -> tuple[float, list[bool], list[int]]:
  """S_ε between two labelled clouds on OTDD's ½-cost.

  Args:
    xa: `[n, D]` features of A; ya: `[n]` int32 label indices into `label_costs`; wa: `[n]`
      weights summing to 1 (0 on padding). xb, yb, wb: the same for B (`[m, D]`, `[m]`, `[m]`).
    label_costs: `[K, K]` float32 W_2² between labels (A's and B's label indices both index it).
    lambda_x, lambda_y: weights of the two cost terms.
    epsilon: absolute ε in units of the ½-cost.
    settings: solver numerics (static).
    batch_size: None: dense costs; an int: blockwise online costs.
    same: B is A (same points, labels and weights): OT(B, B) is OT(A, A).

  Returns:
    (divergence, converged, iterations) with one entry per problem (A–B, A–A, B–B) in the lists;
    A–B iterations include a diverged accelerated attempt, if any.
  """
  common = (label_costs, lambda_x, lambda_y, epsilon, settings, batch_size)
  ab = jax.device_get(cross_ot(xa, ya, wa, xb, yb, wb, *common, settings.adaptive_momentum))
  if ab.diverged:  # Rare: the momentum blew up; plain Sinkhorn cannot.
    first = int(ab.iterations)
    ab = jax.device_get(cross_ot(xa, ya, wa, xb, yb, wb, *common, False))
    ab = ab._replace(iterations=ab.iterations + first)
  aa = jax.device_get(self_ot(xa, ya, wa, *common))
  bb = aa if same else jax.device_get(self_ot(xb, yb, wb, *common))
  divergence = float(ab.cost) - 0.5 * (float(aa.cost) + float(bb.cost))
  solves = (ab, aa, bb)
  return divergence, [bool(s.converged) for s in solves], [int(s.iterations) for s in solves]
