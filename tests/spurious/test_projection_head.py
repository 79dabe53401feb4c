"""The projection + classifier: CFR's InfoNCE by hand, ERM / CFR training runs and learns."""

import jax.numpy as jnp
import ml_collections
import numpy as np

from mlsup_jax.metrics.groups import group_accuracies
from mlsup_jax.spurious import projection_head
from mlsup_jax.spurious.calibration_set import build_calibration_set


def test_info_nce_by_hand():
  anchor = jnp.array([[1.0, 0.0]])
  positives = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
  negatives = jnp.array([[[0.0, -1.0], [-1.0, 0.0]]])
  got = projection_head._info_nce(anchor, positives, negatives, jnp.ones(1), 1.0)
  # Positive 1: logits [1, 0, −1]; positive 2: [0, 0, −1].
  first = -np.log(np.e / (np.e + 1 + np.exp(-1)))
  second = -np.log(1 / (1 + 1 + np.exp(-1)))
  np.testing.assert_allclose(float(got), (first + second) / 2, rtol=1e-6)


def _config(**overrides):
  base = dict(
    embedding_dim=8,
    hidden_dim=0,
    dropout=0.1,
    learning_rate=1e-2,
    weight_decay=1e-5,
    batch_size=32,
    epochs=10,
    positives=4,
    negatives=4,
    contrast_weight=1.0,
    contrast_temperature=1.0,
    tsc_weight=1.0,
    tsc_temperature=0.07,
    tsc_target_weight=0.2,
    tsc_queue=64,
  )
  base.update(overrides)
  return ml_collections.ConfigDict(base)


def _spurious(n, agree, rng):
  y = rng.integers(0, 2, n)
  a = np.where(rng.random(n) < agree, y, 1 - y)
  noise = rng.normal(size=(n, 6))
  x = np.concatenate(
    [y[:, None] + 0.5 * noise[:, :1], 3 * a[:, None] + 0.1 * noise[:, 1:2], noise[:, 2:]], 1
  )
  return x.astype(np.float32), y.astype(np.int32), 2 * y + a


def test_cfr_is_deterministic_and_lifts_the_worst_group_over_erm():
  """Synthetic features: a noisy core feature, a clean spurious one agreeing 95 % of the time."""
  rng = np.random.default_rng(0)
  x, y, _ = _spurious(512, 0.95, rng)
  x_test, y_test, g_test = _spurious(2000, 0.5, rng)
  config = _config()
  erm = projection_head.train_erm(x, y, config, seed=0)
  calib = build_calibration_set(
    x, y, projection_head.predict(erm, config, x), correct_per_class=8, negatives=4
  )
  a = projection_head.train_cfr(x, y, calib, config, seed=1)
  b = projection_head.train_cfr(x, y, calib, config, seed=1)
  for leaf_a, leaf_b in zip(jax_leaves(a), jax_leaves(b), strict=True):
    np.testing.assert_array_equal(leaf_a, leaf_b)
  worst = {
    name: group_accuracies(projection_head.predict(p, config, x_test), y_test, g_test, 4).min()
    for name, p in (("erm", erm), ("cfr", a))
  }
  assert worst["erm"] < 0.4
  assert worst["cfr"] > worst["erm"] + 0.3


def jax_leaves(tree):
  import jax

  return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def test_standardiser_uses_training_statistics():
  x = np.array([[0.0, 1.0], [2.0, 1.0]], np.float32)
  scale = projection_head.Standardiser.fit(x)
  np.testing.assert_allclose(scale(x), [[-1.0, 0.0], [1.0, 0.0]])
