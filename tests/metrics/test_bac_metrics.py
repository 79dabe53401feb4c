"""Tests of mlsup_jax.metrics.bac against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from mlsup_jax.metrics import bac

PROB = np.array([[0.9, 0.5, 0.2], [0.6, 0.0, 1.0]])
INTENSITY = np.array([[120.0, 250.0, 90.0], [100.0, 30.0, 80.0]])
# Calcified (p > 0.5, strict): (0,0) I=120, (1,0) I=100, (1,2) I=80; (0,1) p=0.5 is not.


def test_hand_example_strict():
  m = bac.bac_metrics(PROB, INTENSITY)
  assert m == {
    "PM": pytest.approx(0.9 + 0.5 + 0.2 + 0.6 + 0.0 + 1.0),
    "AM": 3.0,
    "SIM": 120.0 + 100.0 + 80.0,
    "TAM100": 1.0,  # only I = 120 > 100
    "TSIM100": 120.0,
  }
  assert list(m) == ["PM", "AM", "SIM", "TAM100", "TSIM100"]


def test_inclusive_intensity_option():
  m = bac.bac_metrics(PROB, INTENSITY, inclusive_intensity=True)
  assert m["TAM100"] == 2.0  # 120 and 100 >= 100
  assert m["TSIM100"] == 220.0
  assert m["AM"] == 3.0 and m["SIM"] == 300.0


def test_other_threshold_and_cut():
  m = bac.bac_metrics(PROB, INTENSITY, prob_threshold=0.4, x=85)
  # Calcified: 0.9 (120), 0.5 (250), 0.6 (100), 1.0 (80).
  assert m["AM"] == 4.0 and m["SIM"] == 550.0
  assert m["TAM85"] == 3.0 and m["TSIM85"] == 470.0
  assert set(bac.bac_metrics(PROB, INTENSITY, x=99.5)) == {"PM", "AM", "SIM", "TAM99.5", "TSIM99.5"}


def test_ground_truth_mask_as_prob():
  mask = np.array([[1, 0, 0], [1, 0, 1]], dtype=np.uint8)
  m = bac.bac_metrics(mask, INTENSITY)
  assert m == {"PM": 3.0, "AM": 3.0, "SIM": 300.0, "TAM100": 1.0, "TSIM100": 120.0}
  assert bac.bac_metrics(mask.astype(bool), INTENSITY) == m


def test_r_squared_matches_corrcoef():
  rng = np.random.default_rng(0)
  true = rng.random(20) * 1000
  pred = 0.5 * true + rng.normal(0, 100, size=20) + 30
  want = np.corrcoef(pred, true)[0, 1] ** 2
  assert bac.r_squared(pred, true) == pytest.approx(want)
  assert bac.r_squared(true, pred) == pytest.approx(want)
  # Squared correlation ignores affine rescaling; sklearn's r2_score does not.
  assert bac.r_squared(3 * true + 7, true) == pytest.approx(1.0)
  assert r2_score(true, 3 * true + 7) < 0


def test_r_squared_guards():
  assert bac.r_squared([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0
  assert bac.r_squared([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == 0.0
  assert bac.r_squared([2.0], [3.0]) == 0.0
  with pytest.raises(ValueError):
    bac.r_squared([1.0, 2.0], [1.0, 2.0, 3.0])


def _random_images(rng, n):
  masks, intens = [], []
  for _ in range(n):
    masks.append(rng.random((16, 16)) < rng.uniform(0.05, 0.5))
    intens.append(rng.integers(0, 256, size=(16, 16)).astype(np.float64))
  return masks, intens


def test_bac_agreement_perfect_prediction():
  masks, intens = _random_images(np.random.default_rng(1), 8)
  probs = [np.where(m, 0.8, 0.1) for m in masks]
  r = bac.bac_agreement(probs, masks, intens)
  assert set(r) == {"r2_PM", "r2_AM", "r2_SIM", "r2_TAM100", "r2_TSIM100"}
  for k in ("r2_AM", "r2_SIM", "r2_TAM100", "r2_TSIM100"):
    assert r[k] == pytest.approx(1.0)
  # PM = 0.8 * AM + 0.1 * (256 - AM) is affine in AM, so its squared correlation is 1 too.
  assert r["r2_PM"] == pytest.approx(1.0)


def test_bac_agreement_matches_manual():
  rng = np.random.default_rng(2)
  masks, intens = _random_images(rng, 10)
  probs = [np.clip(m * 0.7 + rng.random(m.shape) * 0.4, 0, 1) for m in masks]
  kw = {"x": 150, "inclusive_intensity": True}
  r = bac.bac_agreement(probs, masks, intens, **kw)
  for k in bac.metric_names(150):
    pred = [bac.bac_metrics(p, i, **kw)[k] for p, i in zip(probs, intens, strict=True)]
    true = [
      bac.bac_metrics(m.astype(float), i, **kw)[k] for m, i in zip(masks, intens, strict=True)
    ]
    assert r[f"r2_{k}"] == pytest.approx(np.corrcoef(pred, true)[0, 1] ** 2)


def test_validation():
  with pytest.raises(ValueError):
    bac.bac_metrics(PROB, INTENSITY / 255.0 * 300)  # above 255
  with pytest.raises(ValueError):
    bac.bac_metrics(PROB * 2, INTENSITY)
  with pytest.raises(ValueError):
    bac.bac_metrics(PROB, INTENSITY[:, :2])
  with pytest.raises(ValueError):
    bac.bac_agreement([PROB], [], [INTENSITY])
