"""Label-to-label costs of OTDD: W[i, j] = W_2²(α_i, α_j) between class-conditional feature laws.

Both variants return SQUARED 2-Wasserstein distances (cost ‖x − x'‖², no ½), symmetric, with an
exactly zero diagonal, for every pair of the classes given (the caller stacks the classes of
both datasets, so one matrix holds the A–B, A–A and B–B blocks the debiased outer problem needs).

- `gaussian_label_costs` (microsoft/otdd's default `gaussian_approx`): α_c ≈ N(μ_c, Σ_c), with
  the unbiased ((n−1)-divisor) covariance, and
  W² = ‖μ_i − μ_j‖² + max(0, tr Σ_i + tr Σ_j − 2 tr (Σ_i^½ Σ_j Σ_i^½)^½).
  Square roots are spectral (`eigh`, negative eigenvalues clipped to 0), like otdd's
  `sqrt_method='spectral'`. Computed in float64 by default: in float32 the Bures term shifts
  noticeably for D ≈ 100 (spec reference_code_constants §7).
- `exact_label_costs` (otdd's `inner_ot_method='exact'`): no Gaussian approximation; OT between
  the class clouds themselves, as the DEBIASED Sinkhorn divergence
  S_ε(α_i, α_j) = OT_ε(α_i, α_j) − ½ OT_ε(α_i, α_i) − ½ OT_ε(α_j, α_j) on the cost ‖x − x'‖²,
  clipped at 0. It tends to the unregularised W_2² as ε → 0. otdd's 'exact' is not debiased,
  so a dataset's distance to itself is not 0 there (≈ 0.26 on a small test); here S_ε(α, α) = 0.
  With ε absolute and class clouds far apart, cost/ε is large (≈ 6000 for unit-variance
  classes 3σ apart in 16-D), so the A–B problems run ε-scaling first (`INNER_SETTINGS`);
  pairs that still miss the tolerance are reported, not hidden.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import geometry
from threadpoolctl import threadpool_limits  # Installed with scikit-learn.

from mlsup_jax.ot.class_clouds import ClassClouds
from mlsup_jax.ot.sinkhorn_solver import OTSolve, SinkhornSettings, annealed_epsilon, solve_ot

_HIGHEST = jax.lax.Precision.HIGHEST  # TF32 matmuls on GPUs would perturb the costs by ~1e-3.


def _upper_pairs(num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  rows, cols = np.triu_indices(num_classes, k=1)
  return rows.astype(np.int32), cols.astype(np.int32)


def _symmetric(values: np.ndarray, rows, cols, slots: int, num_classes: int) -> np.ndarray:
  """`[C, C]` symmetric matrix of the real classes from upper-triangle `values` over all slots."""
  costs = np.zeros((slots, slots), np.float64)
  costs[rows, cols] = values
  costs[cols, rows] = values
  return costs[:num_classes, :num_classes]


def psd_sqrt(matrix: jax.Array) -> jax.Array:
  """Spectral square root of symmetric PSD `matrix: [..., D, D]` (eigenvalues clipped at 0)."""
  values, vectors = jnp.linalg.eigh(matrix)
  scaled = vectors * jnp.sqrt(jnp.maximum(values, 0.0))[..., None, :]
  return jnp.matmul(scaled, jnp.swapaxes(vectors, -1, -2), precision=_HIGHEST)


def bures_wasserstein_squared(mean_a, cov_a, mean_b, cov_b, sqrt_cov_a=None) -> jax.Array:
  """W_2²(N(mean_a, cov_a), N(mean_b, cov_b)).

  Args:
    mean_a, mean_b: `[D]`.
    cov_a, cov_b: `[D, D]` symmetric PSD.
    sqrt_cov_a: `[D, D]` precomputed `psd_sqrt(cov_a)`, or None.

  Returns:
    Scalar ‖μ_a − μ_b‖² + max(0, tr Σ_a + tr Σ_b − 2 tr (Σ_a^½ Σ_b Σ_a^½)^½).
  """
  root = psd_sqrt(cov_a) if sqrt_cov_a is None else sqrt_cov_a
  cross = jnp.matmul(jnp.matmul(root, cov_b, precision=_HIGHEST), root, precision=_HIGHEST)
  cross_values = jnp.linalg.eigvalsh(0.5 * (cross + cross.T))
  cross_trace = jnp.sum(jnp.sqrt(jnp.maximum(cross_values, 0.0)))
  bures = jnp.trace(cov_a) + jnp.trace(cov_b) - 2.0 * cross_trace
  return jnp.sum((mean_a - mean_b) ** 2) + jnp.maximum(bures, 0.0)


@jax.jit
def class_moments(points: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Means `[C, D]` and unbiased covariances `[C, D, D]` of padded clouds, in `weights.dtype`.

  Args:
    points: `[C, M, D]` padded class clouds.
    weights: `[C, M]` uniform 1/n_c on real points, 0 on padding. A one-sample class gets a
      zero covariance.
  """

  def one_class(args):
    x, w = args
    x = x.astype(w.dtype)
    mask = (w > 0).astype(w.dtype)
    mean = w @ x
    centred = (x - mean) * mask[:, None]
    count = jnp.sum(mask)
    cov = jnp.matmul(centred.T, centred, precision=_HIGHEST) / jnp.maximum(count - 1.0, 1.0)
    return mean, cov

  # One class at a time: only [M, D] is ever promoted to float64.
  return jax.lax.map(one_class, (points, weights))


@jax.jit
def _bures_pairs(means, covs, rows, cols) -> jax.Array:
  roots = jax.lax.map(psd_sqrt, covs)

  def one_pair(pair):
    i, j = pair
    return bures_wasserstein_squared(means[i], covs[i], means[j], covs[j], roots[i])

  return jax.lax.map(one_pair, (rows, cols), batch_size=8)


def gaussian_label_costs(clouds: ClassClouds, *, float64: bool = True) -> np.ndarray:
  """Squared Bures–Wasserstein costs between the Gaussian fits of every pair of classes.

  Args:
    clouds: padded class clouds (`points: [S, M, D]`, C real classes).
    float64: compute moments and costs in float64 (scoped `jax.enable_x64`).

  Returns:
    `[C, C]` float64 numpy, symmetric, zero diagonal.
  """
  slots = clouds.points.shape[0]
  rows, cols = _upper_pairs(slots)
  dtype = np.float64 if float64 else np.float32
  # On CPU, jaxlib's eigh runs OpenBLAS' LAPACK, whose threads made these small (D × D)
  # problems ~20× slower on a busy 2-core host; one BLAS thread per call avoids that.
  with jax.enable_x64(float64), threadpool_limits(limits=1, user_api="blas"):
    means, covs = class_moments(clouds.points, clouds.weights.astype(dtype))
    values = np.asarray(_bures_pairs(means, covs, rows, cols), np.float64)
  return _symmetric(values, rows, cols, slots, clouds.num_classes)


def squared_distances(x: jax.Array, y: jax.Array) -> jax.Array:
  """`[n, m]` ‖x_i − y_j‖² of `x: [n, D]`, `y: [m, D]`, clipped at 0 (matmul form)."""
  cross = jnp.matmul(x, y.T, precision=_HIGHEST)
  return jnp.maximum(jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None, :] - 2 * cross, 0.0)


def _entropic_ot(x, a, y, b, epsilon, settings, symmetric, accelerated) -> OTSolve:
  """OT_ε(a, b) on ‖x − y‖² (ott-jax's `reg_ot_cost`); ε-scaled from the largest real cost
  if `settings.epsilon_decay` < 1 (not for self-transport: it converges in a few iterations)."""
  cost = squared_distances(x, y)
  if not symmetric:
    real = (a[:, None] > 0) & (b[None, :] > 0)  # Padding rows/columns do not set the scale.
    epsilon = annealed_epsilon(epsilon, jnp.max(jnp.where(real, cost, 0.0)), settings)
  geom = geometry.Geometry(cost_matrix=cost, epsilon=epsilon)
  return solve_ot(geom, a, b, settings, symmetric=symmetric, accelerated=accelerated)


@functools.partial(jax.jit, static_argnames=("settings",))
def _self_terms(points, weights, epsilon, settings: SinkhornSettings) -> OTSolve:
  def one_class(args):
    x, w = args
    return _entropic_ot(x, w, x, w, epsilon, settings, symmetric=True, accelerated=False)

  return jax.lax.map(one_class, (points, weights), batch_size=4)


@functools.partial(jax.jit, static_argnames=("settings", "accelerated", "batch_size"))
def _pair_terms(points, weights, rows, cols, epsilon, settings, accelerated, batch_size):
  def one_pair(pair):
    i, j = pair
    x, a, y, b = points[i], weights[i], points[j], weights[j]
    return _entropic_ot(x, a, y, b, epsilon, settings, symmetric=False, accelerated=accelerated)

  return jax.lax.map(one_pair, (rows, cols), batch_size=batch_size)


def _pair_batch_size() -> int:
  # Vectorised pairs run until the slowest lane converges, and iteration counts differ ~10×
  # between pairs; on a CPU one pair at a time was 1.6× faster (3.1 vs 4.8 s, issue-28 case).
  # Accelerators need the lanes to be busy.
  return 1 if jax.default_backend() == "cpu" else 8


def exact_label_costs(
  clouds: ClassClouds, epsilon: float, settings: SinkhornSettings
) -> tuple[np.ndarray, np.ndarray]:
  """Debiased entropic W_2² between every pair of class clouds (no Gaussian approximation).

  Every pair is solved in float32 first (ε-scaling, then momentum: `settings`). Pairs that
  missed the tolerance are solved again in float64 (scoped `jax.enable_x64`): with cost/ε ≈ 6000
  float32 potentials put a floor of ~1e-3 under the marginal error once momentum over-relaxes
  (a weight ≈ 1.9 amplifies rounding ~10×; one issue-28 pair sat at 2e-3 for 20 000 iterations
  while its cost had settled to 1e-7). float64 costs 2.3× more per iteration on a CPU, hence
  only for those pairs. Pairs whose float64 accelerated solve diverged run once more without
  momentum. Re-runs are padded to power-of-two counts (few compilations).

  Args:
    clouds: padded class clouds (`points: [S, M, D]`, C real classes).
    epsilon: entropic ε, absolute, in units of ‖x − x'‖².
    settings: inner solver numerics (`sinkhorn_solver.INNER_SETTINGS` is OTDD's default).

  Returns:
    (`[C, C]` float64 numpy, symmetric, zero diagonal; `[C, C]` bool, whether the Sinkhorn
    runs behind each entry (the pair and both self-transport terms) met the tolerance).

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.ot.class_clouds import class_clouds
    >>> from mlsup_jax.ot.sinkhorn_solver import INNER_SETTINGS
    >>> x = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    >>> x[20:] = x[:20] + 3.0  # Class 1 is class 0 moved by (3, 3): S_ε = W_2² = 18.
    >>> clouds = class_clouds(x, np.repeat([0, 1], 20), 2)
    >>> costs, converged = exact_label_costs(clouds, 0.1, INNER_SETTINGS)
    >>> bool(converged.all()), round(float(costs[0, 1]), 2)
    (True, 18.0)
  """
  slots = clouds.points.shape[0]
  rows, cols = _upper_pairs(slots)
  batch = _pair_batch_size()
  accelerated = settings.adaptive_momentum
  points, weights = clouds.points, clouds.weights.astype(np.float32)
  selves = jax.device_get(_self_terms(points, weights, epsilon, settings))
  pairs = _pair_terms(points, weights, rows, cols, epsilon, settings, accelerated, batch)
  pairs = jax.device_get(pairs)
  pair_costs = np.asarray(pairs.cost, np.float64)
  pair_converged = np.array(pairs.converged)

  def solve_again(redo, momentum):
    # Repeats up to a power of two: few shapes, without re-solving every pair (in float64).
    fill = np.resize(redo, 1 << (len(redo) - 1).bit_length())
    with jax.enable_x64(True):
      again = _pair_terms(
        points.astype(np.float64), clouds.weights, rows[fill], cols[fill], epsilon, settings,
        momentum, batch,
      )  # fmt: skip
      again = jax.device_get(again)
    pair_costs[redo] = again.cost[: len(redo)]
    pair_converged[redo] = again.converged[: len(redo)]
    return np.asarray(again.diverged[: len(redo)])

  redo = np.flatnonzero(~pair_converged)
  if len(redo):
    diverged = solve_again(redo, accelerated)
    if diverged.any():
      solve_again(redo[diverged], False)
  self_costs = np.asarray(selves.cost, np.float64)
  values = pair_costs.astype(np.float64) - 0.5 * (self_costs[rows] + self_costs[cols])
  self_ok = np.asarray(selves.converged)
  pair_ok = pair_converged & self_ok[rows] & self_ok[cols]
  converged = _symmetric(pair_ok.astype(np.float64), rows, cols, slots, clouds.num_classes) > 0
  np.fill_diagonal(converged, self_ok[: clouds.num_classes])
  return _symmetric(np.maximum(values, 0.0), rows, cols, slots, clouds.num_classes), converged
