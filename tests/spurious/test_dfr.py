"""DFR: group-balanced L1 last-layer retraining recovers the core feature where ERM does not."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mlsup_jax.metrics.groups import group_accuracies
from mlsup_jax.spurious.dfr import fit_dfr


def _spurious(n, agree, rng):
  """A core feature (noisy) and a spurious one (clean) that agrees with y with prob. `agree`."""
  y = rng.integers(0, 2, n)
  a = np.where(rng.random(n) < agree, y, 1 - y)
  x = np.stack(
    [y + 0.6 * rng.normal(size=n), 3 * a + 0.1 * rng.normal(size=n), rng.normal(size=n)], 1
  )
  return x, y, 2 * y + a


def test_dfr_beats_erm_on_the_worst_group():
  rng = np.random.default_rng(0)
  x_train, y_train, _ = _spurious(2000, 0.97, rng)
  x_val, y_val, g_val = _spurious(400, 0.5, rng)
  x_test, y_test, g_test = _spurious(2000, 0.5, rng)
  erm = LogisticRegression().fit(x_train, y_train)
  erm_worst = group_accuracies(erm.predict(x_test), y_test, g_test, 4).min()
  model = fit_dfr(x_val, y_val, g_val, 4, retrains=5, tune_repeats=3)
  dfr_worst = group_accuracies(model.predict(x_test), y_test, g_test, 4).min()
  assert erm_worst < 0.5
  assert dfr_worst > erm_worst + 0.2
  assert model.c in (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)


def test_dfr_is_l1_regularised():
  """A tiny C zeroes every coefficient (L1), which L2 never does exactly."""
  rng = np.random.default_rng(1)
  x, y, g = _spurious(400, 0.5, rng)
  model = fit_dfr(x, y, g, 4, c_grid=(1e-4,), retrains=2, tune_repeats=1)
  assert np.all(model.coef == 0)


def test_bad_input():
  rng = np.random.default_rng(2)
  x, y, g = _spurious(200, 0.5, rng)
  with pytest.raises(ValueError, match="two classes"):
    fit_dfr(x, np.zeros_like(y), g, 4)
  with pytest.raises(ValueError, match="Every group"):
    fit_dfr(x[g != 3], y[g != 3], g[g != 3], 4)
  with pytest.raises(ValueError, match="c_grid"):
    fit_dfr(x, y, g, 4, c_grid=())
