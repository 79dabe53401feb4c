"""DFR: group-balanced last-layer retraining on frozen features (Kirichenko et al., 2023).

The reference that *does* use group labels, as in `dfr_evaluate_spurious.py` (DFR(Val)):

1. standardise the features (`StandardScaler`, fit on the validation features);
2. tune C over `c_grid`: split the validation set in half; fit an L1 logistic regression
   (`liblinear`) on a group-balanced subsample of the first half (every group cut to the
   smallest group's size), score the worst-group accuracy on the second half; repeat over
   `tune_repeats` random splits and keep the C with the best mean;
3. refit `retrains` times on group-balanced subsamples of the whole validation set with that C
   and average the coefficients and intercepts (their 20).

scikit-learn does the fitting; this file only arranges the data.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mlsup_jax.metrics.groups import group_accuracies

__all__ = ["DfrModel", "fit_dfr"]

DEFAULT_C_GRID = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)


@dataclasses.dataclass(frozen=True)
class DfrModel:
  """The averaged linear classifier. `predict(features) -> [N]` classes."""

  scaler: StandardScaler
  coef: np.ndarray  # [C or 1, F]
  intercept: np.ndarray
  c: float

  def predict(self, features: np.ndarray) -> np.ndarray:
    scores = self.scaler.transform(np.asarray(features, np.float64)) @ self.coef.T + self.intercept
    if scores.shape[1] == 1:
      return (scores[:, 0] > 0).astype(np.int32)
    return np.argmax(scores, axis=1).astype(np.int32)


def _balanced(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  present = [np.flatnonzero(groups == g) for g in np.unique(groups)]
  size = min(len(p) for p in present)
  return np.concatenate([rng.choice(p, size=size, replace=False) for p in present])


def _l1_logistic(c: float, seed: int) -> LogisticRegression:
  """An L1 logistic regression (`liblinear`) in the spelling of the installed scikit-learn
  (1.8 deprecates `penalty="l1"` for `l1_ratio=1`; before 1.8 `l1_ratio` alone means L2)."""
  major, minor = (int(part) for part in sklearn.__version__.split(".")[:2])
  if (major, minor) >= (1, 8):
    return LogisticRegression(l1_ratio=1.0, C=c, solver="liblinear", random_state=seed)
  return LogisticRegression(penalty="l1", C=c, solver="liblinear", random_state=seed)


def _fit(x, y, c, seed):
  model = _l1_logistic(c, seed)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    return model.fit(x, y)


def fit_dfr(
  features: np.ndarray,
  labels: np.ndarray,
  groups: np.ndarray,
  num_groups: int,
  *,
  c_grid: Sequence[float] = DEFAULT_C_GRID,
  retrains: int = 20,
  tune_repeats: int = 5,
  seed: int = 0,
) -> DfrModel:
  """DFR(Val) on validation features with their group labels (module docstring).

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.spurious.dfr import fit_dfr
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400); a = rng.integers(0, 2, 400)
    >>> x = np.stack([y + 0.3 * rng.normal(size=400), a + 0.1 * rng.normal(size=400)], 1)
    >>> model = fit_dfr(x, y, 2 * y + a, 4, retrains=3, tune_repeats=2)
    >>> float(np.mean(model.predict(x) == y)) > 0.9
    True

  Args:
    features: `[N, F]` validation features. labels: `[N]`. groups: `[N]` in `[0, num_groups)`.
    num_groups: G (every group needs examples).
    c_grid: inverse L1 strengths to try.
    retrains: balanced refits averaged at the end.
    tune_repeats: random half splits per C.
    seed: the splits and subsamples.

  Raises:
    ValueError: an empty group, one class only, or an empty grid.
  """
  x = np.asarray(features, np.float64)
  y, g = np.asarray(labels), np.asarray(groups)
  if len(np.unique(y)) < 2:
    raise ValueError("DFR needs validation examples of at least two classes.")
  if not len(c_grid):
    raise ValueError("c_grid is empty.")
  counts = np.bincount(g, minlength=num_groups)
  if np.any(counts < 2):
    raise ValueError(
      f"Every group needs ≥ 2 validation examples for DFR; counts {counts.tolist()}."
    )
  scaler = StandardScaler().fit(x)
  x = scaler.transform(x)
  rng = np.random.default_rng(seed)
  scores = {c: [] for c in c_grid}
  for _ in range(int(tune_repeats)):
    order = rng.permutation(len(x))
    first, second = order[: len(x) // 2], order[len(x) // 2 :]
    if len(np.unique(g[first])) < num_groups or len(np.unique(g[second])) < num_groups:
      continue  # A half without some group cannot train or score it.
    train = first[_balanced(g[first], rng)]
    for c in c_grid:
      model = _fit(x[train], y[train], c, seed)
      accuracy = group_accuracies(model.predict(x[second]), y[second], g[second], num_groups)
      scores[c].append(accuracy.min())
  best_c = max(c_grid, key=lambda c: np.mean(scores[c]) if scores[c] else -1.0)
  coefs, intercepts = [], []
  for _ in range(int(retrains)):
    subset = _balanced(g, rng)
    model = _fit(x[subset], y[subset], best_c, seed)
    coefs.append(model.coef_)
    intercepts.append(model.intercept_)
  return DfrModel(scaler, np.mean(coefs, axis=0), np.mean(intercepts, axis=0), float(best_c))
