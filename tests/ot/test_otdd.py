"""OTDD: properties (self-distance, symmetry, monotone shift, relabelling), independent numpy /
scipy oracles (Bures via sqrtm, log-domain Sinkhorn, exact OT by assignment), padding
invariance, minimum class counts and input errors.

Sizes are tiny and shapes shared between tests, so the file compiles only a handful of programs.
"""

import importlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg, optimize, special
from scipy.spatial.distance import cdist

from mlsup_jax.ot import SinkhornSettings, embed, flatten_pixels, otdd, outer_problem
from mlsup_jax.ot.class_clouds import class_clouds, padded_size
from mlsup_jax.ot.label_costs import gaussian_label_costs
from mlsup_jax.ot.outer_problem import auto_batch_size

_MEANS = np.random.default_rng(123).normal(scale=2.0, size=(3, 4))  # Shared class structure.


def _dataset(n, seed, shift=0.0, labels=(0, 1, 2)):
  """`n` points of 3 Gaussian classes in 4-D (per-class covariances differ), plus `shift`."""
  rng = np.random.default_rng(seed)
  y = np.asarray(labels)[np.arange(n) % 3]
  scales = np.array([0.5, 0.8, 1.1])[np.arange(n) % 3]
  x = _MEANS[np.arange(n) % 3] + scales[:, None] * rng.normal(size=(n, 4)) + shift
  return x.astype(np.float32), y


# ----------------------------------------------------------------------------- oracles


def _bures_oracle(x, y):
  """W_2² between the Gaussian fits (np.cov, n − 1) of two clouds, with scipy's sqrtm."""
  mean_x, mean_y = x.mean(0), y.mean(0)
  cov_x, cov_y = np.cov(x.T.astype(np.float64)), np.cov(y.T.astype(np.float64))
  root = linalg.sqrtm(cov_x)
  cross = linalg.sqrtm(root @ cov_y @ root)
  return np.sum((mean_x - mean_y) ** 2) + np.trace(cov_x + cov_y - 2 * np.real(cross))


def _label_cost_oracle(xa, ya, xb, yb):
  """`[K, K]` Bures label costs over A's classes then B's (np.unique order)."""
  clouds = [xa[ya == c] for c in np.unique(ya)] + [xb[yb == c] for c in np.unique(yb)]
  return np.array([[_bures_oracle(p, q) for q in clouds] for p in clouds])


def _otdd_cost(xa, ia, xb, ib, label_costs):
  """OTDD's ground cost ½‖x − x'‖² + ½ W[y, y'] (float64)."""
  return 0.5 * cdist(xa, xb, "sqeuclidean") + 0.5 * label_costs[np.ix_(ia, ib)]


def _entropic_ot(cost, eps):
  """OT_ε = <P, C> + ε KL(P | a⊗b), uniform a, b, by log-domain Sinkhorn in float64."""
  n, m = cost.shape
  log_a, log_b = np.full(n, -np.log(n)), np.full(m, -np.log(m))
  f, g = np.zeros(n), np.zeros(m)
  for step in range(50000):
    g = -eps * special.logsumexp((f[:, None] - cost) / eps + log_a[:, None], axis=0)
    f = -eps * special.logsumexp((g[None, :] - cost) / eps + log_b[None, :], axis=1)
    if step % 20 == 0:
      plan = np.exp((f[:, None] + g[None, :] - cost) / eps + log_a[:, None] + log_b[None, :])
      if np.abs(plan.sum(0) - 1 / m).sum() < 1e-9:
        return f.mean() + g.mean()
  raise AssertionError("the numpy Sinkhorn oracle did not converge")


def _entropic_self_ot(cost, eps):
  """OT_ε(α, α) by Feydy et al.'s averaged fixed point f ← ½ (f + T f) (plain alternating
  Sinkhorn stalls for hours on separated clusters); OT_ε = 2 <f, a> at the fixed point."""
  n = cost.shape[0]
  log_a, f = np.full(n, -np.log(n)), np.zeros(n)
  for _ in range(50000):
    target = -eps * special.logsumexp((f[None, :] - cost) / eps + log_a[None, :], axis=1)
    if np.abs(target - f).max() < 1e-11:
      return 2 * target.mean()
    f = 0.5 * (f + target)
  raise AssertionError("the numpy symmetric Sinkhorn oracle did not converge")


def _sinkhorn_divergence_oracle(xa, ya, xb, yb, eps):
  label_costs = _label_cost_oracle(xa, ya, xb, yb)
  ia = np.searchsorted(np.unique(ya), ya)
  ib = np.searchsorted(np.unique(yb), yb) + len(np.unique(ya))
  return (
    _entropic_ot(_otdd_cost(xa, ia, xb, ib, label_costs), eps)
    - 0.5 * _entropic_self_ot(_otdd_cost(xa, ia, xa, ia, label_costs), eps)
    - 0.5 * _entropic_self_ot(_otdd_cost(xb, ib, xb, ib, label_costs), eps)
  )


def _exact_w2_squared(x, y):
  """Unregularised W_2² between equal-size uniform clouds (optimal assignment)."""
  cost = cdist(x, y, "sqeuclidean")
  rows, cols = optimize.linear_sum_assignment(cost)
  return cost[rows, cols].mean()


# ----------------------------------------------------------------------------- properties


def test_distance_to_itself_is_zero_even_when_subsampled():
  x, y = _dataset(96, seed=0)
  # max_samples < n: both sides are subsampled, with the same indices for the same data.
  result = otdd(x, y, x.copy(), y.copy(), max_samples=48, seed=3)
  assert result.same_dataset and result.num_samples_a == 48
  assert abs(result.divergence) < 1e-5 and result.distance < 5e-3
  assert np.allclose(np.diag(result.label_costs), 0.0)
  # Independent subsamples of the same data (microsoft/otdd issue #32) are far from 0.
  rng = np.random.default_rng(3)
  first, second = rng.choice(96, 48, replace=False), rng.choice(96, 48, replace=False)
  independent = otdd(x[first], y[first], x[second], y[second])
  assert independent.distance > 100 * result.distance


def test_exact_inner_ot_distance_to_itself_is_zero():
  x, y = _dataset(48, seed=0)
  result = otdd(x, y, x, y, inner_ot="exact", inner_max_samples=8)
  assert result.converged and abs(result.divergence) < 1e-5
  assert np.allclose(np.diag(result.label_costs), 0.0)


def test_symmetric_and_relabelling_invariant():
  xa, ya = _dataset(48, seed=1)
  xb, yb = _dataset(40, seed=2, shift=0.3)
  forward, backward = otdd(xa, ya, xb, yb), otdd(xb, yb, xa, ya)
  assert forward.converged and backward.converged
  assert forward.divergence == pytest.approx(backward.divergence, rel=1e-3)
  np.testing.assert_allclose(forward.label_costs, backward.label_costs.T, rtol=1e-6)
  # Labels only group samples: renaming B's classes (not in sorted order) changes nothing.
  renamed = otdd(xa, ya, xb, np.array([7, 3, 5])[yb])
  assert renamed.divergence == pytest.approx(forward.divergence, rel=1e-4)


def test_grows_monotonically_with_a_mean_shift():
  xa, ya = _dataset(48, seed=1)
  xb, yb = _dataset(48, seed=2)
  shifts = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]
  distances = [otdd(xa, ya, xb + s, yb).distance for s in shifts]
  assert np.all(np.diff(distances) > 0), distances
  # A large shift s·1 (D = 4) dominates both terms (features and every class mean move by it):
  # OTDD² ≈ s²D + s²D, so d ≈ √(2D) · s.
  assert distances[-1] == pytest.approx(np.sqrt(2 * 4) * shifts[-1], rel=0.1)


# ----------------------------------------------------------------------------- oracles


def test_gaussian_label_costs_match_scipy_sqrtm_bures():
  xa, ya = _dataset(48, seed=1)
  xb, yb = _dataset(40, seed=2, shift=0.3)
  result = otdd(xa, ya, xb, yb)
  oracle = _label_cost_oracle(xa, ya, xb, yb)
  np.testing.assert_allclose(result.label_costs, oracle[:3, 3:], rtol=1e-6, atol=1e-9)


def test_divergence_matches_numpy_log_domain_sinkhorn():
  xa, ya = _dataset(48, seed=1)
  xb, yb = _dataset(40, seed=2, shift=0.3)
  # ε = 1 keeps the float64 oracle quick; ε is absolute, in units of the ½-cost, for both.
  result = otdd(xa, ya, xb, yb, epsilon=1.0)
  assert result.converged
  oracle = _sinkhorn_divergence_oracle(xa, ya, xb, yb, eps=1.0)
  assert result.divergence == pytest.approx(oracle, rel=1e-4)
  assert result.distance == pytest.approx(np.sqrt(2 * oracle), rel=1e-4)


def test_small_epsilon_approaches_exact_ot_by_assignment():
  """S_ε → exact OT as ε → 0; for n = m uniform clouds exact OT is an optimal assignment."""
  xa, ya = _dataset(48, seed=1)
  xb, yb = _dataset(48, seed=2, shift=0.3)
  label_costs = _label_cost_oracle(xa, ya, xb, yb)
  cost = _otdd_cost(xa, ya, xb, yb + 3, label_costs)
  rows, cols = optimize.linear_sum_assignment(cost)
  exact = cost[rows, cols].mean()
  result = otdd(xa, ya, xb, yb, epsilon=0.01)
  assert result.converged
  assert result.divergence == pytest.approx(exact, rel=0.02)  # Entropic bias ~ ε log n.


def test_exact_inner_ot_matches_assignment_w2():
  xa, ya = _dataset(48, seed=1)  # 16 points per class.
  xb, yb = _dataset(48, seed=2, shift=0.3)
  result = otdd(xa, ya, xb, yb, inner_ot="exact", inner_epsilon=0.005, inner_max_samples=None)
  assert result.converged
  oracle = np.array(
    [[_exact_w2_squared(xa[ya == i], xb[yb == j]) for j in range(3)] for i in range(3)]
  )
  np.testing.assert_allclose(result.label_costs, oracle, rtol=0.02)


def _flipped_label_datasets(per_class):
  """Issue 28's case: 5 Gaussian classes in 16-D (centres 3σ apart), 20 % of B's labels flipped
  to another class, so B's class clouds are mixtures and cost/ε ≈ 6000 at ε = 0.1."""
  centres = np.random.default_rng(7).normal(scale=3.0, size=(5, 16))
  labels = np.repeat(np.arange(5), per_class)
  rng = np.random.default_rng(0)
  xa = centres[labels] + rng.normal(size=(5 * per_class, 16))
  xb = centres[labels] + rng.normal(size=(5 * per_class, 16))
  flip = rng.choice(5 * per_class, per_class, replace=False)  # 20 %.
  yb = labels.copy()
  yb[flip] = (yb[flip] + rng.integers(1, 5, size=len(flip))) % 5
  return xa.astype(np.float32), labels, xb.astype(np.float32), yb


def _small_flipped_label_datasets():
  """The same kind of case in the shapes of `_dataset(48)` (3 classes of 16 in 4-D: compiled
  programs are shared): centres 8σ apart, 3 of each B class's 16 labels moved to the next class
  (sizes kept). The old solver left 1 pair unconverged; float32 misses 3 pairs here."""
  centres = np.random.default_rng(3).normal(scale=8.0, size=(3, 4))
  labels = np.arange(48) % 3
  rng = np.random.default_rng(103)
  xa, xb = (centres[labels] + rng.normal(size=(48, 4)) for _ in range(2))
  yb = labels.copy()
  for c in range(3):
    yb[np.flatnonzero(labels == c)[:3]] = (c + 1) % 3
  return xa.astype(np.float32), labels, xb.astype(np.float32), yb


def _lp_w2_squared(x, y):
  """Unregularised W_2² between uniform clouds of any sizes, by linear programming (HiGHS)."""
  n, m = len(x), len(y)
  constraints = np.concatenate([np.kron(np.eye(n), np.ones(m)), np.kron(np.ones(n), np.eye(m))])
  marginals = np.concatenate([np.full(n, 1 / n), np.full(m, 1 / m)])
  cost = cdist(x.astype(np.float64), y.astype(np.float64), "sqeuclidean").ravel()
  result = optimize.linprog(cost, A_eq=constraints, b_eq=marginals, method="highs")
  assert result.status == 0
  return result.fun


def _assert_exact_label_costs_converge_and_bracket_lp_w2(xa, ya, xb, yb, classes):
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # No "missed the tolerance" warning.
    result = otdd(xa, ya, xb, yb, inner_ot="exact", inner_max_samples=None)
  assert result.converged
  # S_ε = OT_ε(a, b) − ½ OT_ε(a, a) − ½ OT_ε(b, b) with W ≤ OT_ε(a, b) ≤ W + ε log min(n, m)
  # and 0 ≤ OT_ε(a, a) ≤ ε log n: a band of width ≈ ε log(nm) around the exact W_2²; 1e-3
  # relative on top for the marginal tolerance 1e-3.
  eps = 0.1
  for i in range(classes):
    for j in range(classes):
      x, y = xa[ya == i], xb[yb == j]
      w2 = _lp_w2_squared(x, y)
      low = w2 - 0.5 * eps * (np.log(len(x)) + np.log(len(y)))
      high = w2 + eps * np.log(min(len(x), len(y)))
      assert low - 1e-3 * w2 <= result.label_costs[i, j] <= high + 1e-3 * w2, (i, j, w2)


def test_exact_inner_ot_converges_on_mixed_classes_and_brackets_lp_w2():
  """Issue 28: mixed classes far apart (cost/ε ≈ 10⁴): momentum diverged or float32 stalled,
  and converged=False. Now: ε-scaling, momentum, a float64 re-solve of the missed pairs."""
  _assert_exact_label_costs_converge_and_bracket_lp_w2(*_small_flipped_label_datasets(), 3)


@pytest.mark.study
def test_exact_inner_ot_converges_on_the_issue_case_at_40_per_class():
  """Before: 8 pairs capped at 5000 iterations, converged=False, 13.6 s warm on 1 core; now
  0.6 s warm (≈ 12 s of compilation, hence the study tier)."""
  _assert_exact_label_costs_converge_and_bracket_lp_w2(*_flipped_label_datasets(40), 5)


def test_exact_inner_ot_names_the_pairs_that_miss_the_tolerance(monkeypatch):
  otdd_module = importlib.import_module("mlsup_jax.ot.otdd")  # `ot.otdd` is the function.
  real = otdd_module.exact_label_costs

  def one_pair_missed(*args):  # The real costs, with the pair (A:1, B:2) marked unconverged.
    costs, converged = real(*args)
    converged[1, 3 + 2] = converged[3 + 2, 1] = False
    return costs, converged

  monkeypatch.setattr(otdd_module, "exact_label_costs", one_pair_missed)
  xa, ya, xb, yb = _small_flipped_label_datasets()
  with pytest.warns(
    UserWarning, match=r"1 class pair\(s\) missed the tolerance 0.001 .*: \(A:1, B:2\)\."
  ):
    result = otdd(xa, ya, xb, yb, inner_ot="exact", inner_max_samples=None)
  assert not result.converged


# ----------------------------------------------------------------------------- layout


def test_padding_does_not_change_the_result():
  xa, ya = _dataset(48, seed=1)
  xb, yb = _dataset(40, seed=2, shift=0.3)
  base = otdd(xa, ya, xb, yb)
  padded = otdd(xa, ya, xb, yb, class_pad_size=40, sample_pad_size=48)
  assert padded.divergence == pytest.approx(base.divergence, rel=1e-5)
  np.testing.assert_allclose(padded.label_costs, base.label_costs, rtol=1e-9)
  exact = otdd(xa, ya, xb, yb, inner_ot="exact", inner_max_samples=8)
  exact_padded = otdd(xa, ya, xb, yb, inner_ot="exact", inner_max_samples=8, class_pad_size=16)
  np.testing.assert_allclose(exact_padded.label_costs, exact.label_costs, rtol=1e-5)
  with pytest.raises(ValueError, match="class_pad_size=8 is smaller"):
    otdd(xa, ya, xb, yb, class_pad_size=8)


def test_online_blockwise_costs_match_dense():
  xa, ya = _dataset(48, seed=1)
  xb, yb = _dataset(48, seed=2, shift=0.3)
  dense, online = otdd(xa, ya, xb, yb), otdd(xa, ya, xb, yb, batch_size=16)
  assert online.divergence == pytest.approx(dense.divergence, rel=1e-5)
  ragged = otdd(xa, ya, xb, yb, batch_size=20)  # 48 rows: not whole blocks (padded).
  assert ragged.divergence == pytest.approx(dense.divergence, rel=1e-5)
  # "auto" (the default) is dense at this size, online blocks above 10240 points per side.
  assert dense.settings["batch_size"] is None and online.settings["batch_size"] == 16
  assert auto_batch_size(10240, 10240) is None and auto_batch_size(10241, 10) == 256


def test_column_tiles_match_dense(monkeypatch):
  # Tiles of 13 columns over 40 and 56 points: several tiles, the last one padded with −inf.
  monkeypatch.setattr(outer_problem, "COLUMN_TILE", 13)
  xa, ya = _dataset(40, seed=3)
  xb, yb = _dataset(56, seed=4, shift=0.3)
  dense, tiled = otdd(xa, ya, xb, yb), otdd(xa, ya, xb, yb, batch_size=8)
  assert tiled.divergence == pytest.approx(dense.divergence, rel=1e-5)


def test_streaming_lse_equals_logsumexp_with_zero_weight_points():
  rng = np.random.default_rng(0)
  block, points = rng.normal(size=(5, 3)), rng.normal(size=(23, 3))
  potentials = rng.normal(size=23)
  potentials[[0, 7, 22]] = -np.inf  # zero-weight points
  p = rng.normal(size=5)
  cost = (block[:, None, :] - points[None]) ** 2
  expected = 0.7 * jax.nn.logsumexp((p[:, None] + potentials[None] - cost.sum(-1)) / 0.7, axis=1)

  def cost_tile(tile):
    return ((jnp.asarray(block)[:, None, :] - tile[None]) ** 2).sum(-1)

  for tile in (1, 4, 23, 64):
    out = outer_problem.streaming_lse(cost_tile, p, points, potentials, 0.7, tile=tile)
    np.testing.assert_allclose(out, expected, rtol=1e-5)
  all_masked = outer_problem.streaming_lse(cost_tile, p, points, np.full(23, -np.inf), 0.7, 4)
  assert np.all(np.isneginf(all_masked))


def test_padded_sizes_and_clouds():
  assert [padded_size(n) for n in (1, 8, 9, 17, 100, 1000, 10_000)] == [
    8, 8, 9, 18, 104, 1024, 10240
  ]  # fmt: skip
  features = np.arange(10, dtype=np.float32).reshape(5, 2)
  clouds = class_clouds(features, np.array([1, 0, 1, 1, 0]), 2, pad_size=4)
  assert clouds.num_classes == 2 and clouds.points.shape == (8, 4, 2)  # 8 class slots.
  np.testing.assert_array_equal(clouds.counts, [2, 3, 1, 1, 1, 1, 1, 1])
  np.testing.assert_array_equal(clouds.points[0, :2], features[[1, 4]])
  np.testing.assert_allclose(clouds.weights.sum(1), 1.0)
  assert np.all(clouds.points[0, 2:] == 0) and np.all(clouds.weights[0, 2:] == 0)
  # float32 vs float64 Bures on the same clouds agree to float32 precision at D = 4.
  np.testing.assert_allclose(
    gaussian_label_costs(clouds, float64=False), gaussian_label_costs(clouds), rtol=1e-3, atol=1e-3
  )


# ----------------------------------------------------------------------------- classes, errors


def test_small_classes_are_dropped_with_a_warning():
  xa, ya = _dataset(48, seed=1)
  xb, yb = _dataset(40, seed=2, shift=0.3)
  # Class 0 of B keeps one sample: dropped although it is not the highest label (otdd crashes).
  keep = (yb != 0) | (np.arange(40) == 0)
  with pytest.warns(UserWarning, match=r"dataset B: dropping 1 class\(es\) with < 2 samples"):
    result = otdd(xa, ya, xb[keep], yb[keep], sample_pad_size=48)
  assert result.dropped_b == {0: 1} and result.dropped_a == {}
  np.testing.assert_array_equal(result.classes_b, [1, 2])
  assert result.label_costs.shape == (3, 2)
  assert result.num_samples_b == keep.sum() - 1
  # The same as computing without that sample.
  reference = otdd(xa, ya, xb[keep][1:], yb[keep][1:], sample_pad_size=48)
  assert result.divergence == pytest.approx(reference.divergence, rel=1e-5)
  with pytest.raises(ValueError, match="dataset A: no class has ≥ 20 samples"):
    otdd(xa, ya, xb, yb, min_class_count=20)


def test_bad_inputs_raise_clear_errors():
  x, y = _dataset(12, seed=0)
  with pytest.raises(ValueError, match="dataset A: 12 feature rows but 11 labels"):
    otdd(x, y[:11], x, y)
  with pytest.raises(ValueError, match=r"dataset B: features must be \[N, D\]"):
    otdd(x, y, x.reshape(12, 2, 2), y)
  with pytest.raises(ValueError, match=r"labels must be \[N\]"):
    otdd(x, y[:, None], x, y)
  with pytest.raises(ValueError, match="feature dimensions differ"):
    otdd(x, y, x[:, :3], y)
  with pytest.raises(ValueError, match="NaN or Inf"):
    otdd(x, y, np.where(x > 1, np.nan, x), y)
  with pytest.raises(ValueError, match="inner_ot must be one of"):
    otdd(x, y, x, y, inner_ot="sliced")
  with pytest.raises(ValueError, match="epsilon and inner_epsilon must be > 0"):
    otdd(x, y, x, y, epsilon=0.0)
  with pytest.raises(ValueError, match="threshold must be > 0"):
    SinkhornSettings(threshold=0.0)


def test_feature_spaces():
  images = np.arange(2 * 3 * 3 * 1, dtype=np.uint8).reshape(2, 3, 3, 1)
  assert flatten_pixels(images).shape == (2, 9)
  calls = []

  def model(batch):
    calls.append(batch.shape)
    return batch.reshape(batch.shape[0], -1)[:, :2] * 2.0

  features = embed(np.arange(10 * 4, dtype=np.float32).reshape(10, 4), model, batch_size=4)
  assert calls == [(4, 4)] * 3  # The last batch is padded to the fixed size.
  np.testing.assert_array_equal(features, np.arange(40).reshape(10, 4)[:, :2] * 2.0)
  with pytest.raises(ValueError, match="model returned 1 rows"):
    embed(np.zeros((3, 2)), lambda b: b[:1], batch_size=2)


def test_class_weights_are_float64_so_float64_label_costs_are_exact():
  """A class of 3 samples: float32 weights 1/3 would put the mean off by ~3e-8 relative."""
  import jax

  from mlsup_jax.ot.class_clouds import class_clouds
  from mlsup_jax.ot.label_costs import class_moments

  rng = np.random.default_rng(0)
  features = rng.normal(size=(7, 3)).astype(np.float32) + 1000.0
  labels = np.array([0, 0, 0, 1, 1, 1, 1])
  clouds = class_clouds(features, labels, 2)
  assert clouds.weights.dtype == np.float64
  assert clouds.weights[0, :3].tolist() == [1 / 3] * 3
  with jax.enable_x64(True):
    means, _ = class_moments(clouds.points, clouds.weights)
  expected = features[:3].astype(np.float64).mean(axis=0)
  np.testing.assert_allclose(np.asarray(means)[0], expected, rtol=1e-14)
