"""OOD metrics against sklearn (with ties, large n), FPR95 brute force, degenerate inputs."""

import numpy as np
import pytest
from sklearn import metrics as skm

from mlsup_jax.metrics import ood


def _tied_data(n, seed, pos_frac=0.1, decimals=1):
  """Scores rounded to few decimals (many ties), positives shifted up."""
  rng = np.random.default_rng(seed)
  labels = rng.random(n) < pos_frac
  scores = np.round(rng.normal(size=n) + 0.8 * labels, decimals)
  return scores, labels


@pytest.mark.parametrize("decimals", [0, 1, 3])
def test_matches_sklearn_with_ties(decimals):
  scores, labels = _tied_data(20_000, decimals, decimals=decimals)
  fpr, tpr, thr = ood.roc_curve(scores, labels)
  ref = skm.roc_curve(labels, scores, drop_intermediate=False)
  np.testing.assert_allclose(fpr, ref[0], rtol=0, atol=1e-12)
  np.testing.assert_allclose(tpr, ref[1], rtol=0, atol=1e-12)
  np.testing.assert_array_equal(thr, ref[2])
  dropped = ood.roc_curve(scores, labels, drop_intermediate=True)
  for ours, theirs in zip(dropped, skm.roc_curve(labels, scores), strict=True):
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
  precision, recall, pr_thr = ood.precision_recall_curve(scores, labels)
  ref = skm.precision_recall_curve(labels, scores)
  np.testing.assert_allclose(precision, ref[0], rtol=0, atol=1e-12)
  np.testing.assert_allclose(recall, ref[1], rtol=0, atol=1e-12)
  np.testing.assert_array_equal(pr_thr, ref[2])
  assert ood.auroc(scores, labels) == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
  assert ood.aupr(scores, labels) == pytest.approx(
    skm.average_precision_score(labels, scores), abs=1e-12
  )


def test_large_n_any_shape_and_report():
  # 1M pixels as [4, 500, 500] float32 scores with ties; labels as 0/1 ints.
  scores, labels = _tied_data(1_000_000, 7, pos_frac=0.03, decimals=2)
  s = scores.astype(np.float32).reshape(4, 500, 500)
  y = labels.astype(np.int32).reshape(4, 500, 500)
  report = ood.ood_report(s, y)
  flat_s = s.reshape(-1)
  assert report["auroc"] == pytest.approx(skm.roc_auc_score(labels, flat_s), abs=1e-10)
  assert report["aupr"] == pytest.approx(skm.average_precision_score(labels, flat_s), abs=1e-10)
  assert report["num_pos"] == labels.sum() and report["num_neg"] == (~labels).sum()
  assert report["fpr95"] == ood.fpr_at_tpr(flat_s, labels, 0.95)


def _brute_force_fpr_at_tpr(scores, labels, target):
  fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
  return fpr[np.flatnonzero(tpr >= target)[0]]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target", [0.95, 0.5, 0.8, 1.0])
def test_fpr_at_tpr_brute_force(seed, target):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(20, 400))
  scores, labels = _tied_data(n, seed, pos_frac=0.3, decimals=int(rng.integers(0, 3)))
  labels[:2] = [True, False]  # both classes present
  expected = _brute_force_fpr_at_tpr(scores, labels, target)
  assert ood.fpr_at_tpr(scores, labels, target) == expected


def test_fpr95_exact_boundary():
  # 20 OOD: TPR hits exactly 19/20 = 0.95 at threshold 1.9; two ID above it, one at 1.9.
  ood_scores = np.r_[np.linspace(3, 2, 19), -5.0]
  id_scores = np.r_[2.5, 2.05, 1.9, np.full(7, -1.0)]
  ood_scores[-2] = 1.9  # tie between the 19th OOD and an ID sample
  scores = np.r_[ood_scores, id_scores]
  labels = np.r_[np.ones(20), np.zeros(10)]
  assert ood.fpr_at_tpr(scores, labels) == pytest.approx(0.3)
  assert ood.fpr_at_tpr(scores, labels) == _brute_force_fpr_at_tpr(scores, labels, 0.95)


def test_perfect_and_inverted_separation():
  labels = np.r_[np.zeros(5), np.ones(5)]
  scores = np.arange(10.0)
  assert ood.ood_report(scores, labels)["auroc"] == 1.0
  assert ood.ood_report(scores, labels)["aupr"] == 1.0
  assert ood.ood_report(scores, labels)["fpr95"] == 0.0
  assert ood.auroc(-scores, labels) == 0.0
  assert ood.fpr_at_tpr(-scores, labels) == 1.0
  assert ood.auroc(np.zeros(10), labels) == 0.5  # all tied: chance


def test_one_class_gives_nan():
  scores = np.arange(6.0)
  for labels in (np.zeros(6), np.ones(6, bool)):
    report = ood.ood_report(scores, labels)
    assert np.isnan(report["auroc"]) and np.isnan(report["aupr"]) and np.isnan(report["fpr95"])
    assert np.isnan(ood.gmean_threshold(scores, labels))
  fpr, tpr, _ = ood.roc_curve(scores, np.zeros(6))
  assert np.all(np.isnan(tpr)) and fpr[-1] == 1.0
  tpr, fpr = ood.tpr_fpr_at_threshold(scores, np.zeros(6), 3.0)
  assert np.isnan(tpr) and fpr == 0.5


def test_invalid_inputs():
  with pytest.raises(ValueError, match="2 non-finite"):
    ood.auroc(np.array([0.1, np.nan, np.inf, 0.3]), np.array([0, 1, 0, 1]))
  with pytest.raises(ValueError, match="0 .ID. or 1"):
    ood.auroc(np.arange(3.0), np.array([0, 1, 2]))
  with pytest.raises(ValueError, match="shape"):
    ood.auroc(np.arange(4.0), np.array([0, 1, 0]))
  with pytest.raises(ValueError, match="empty"):
    ood.aupr(np.zeros(0), np.zeros(0))
  with pytest.raises(ValueError, match="tpr"):
    ood.fpr_at_tpr(np.arange(2.0), np.array([0, 1]), 1.5)


def test_gmean_threshold_and_diff():
  scores, labels = _tied_data(3_000, 11, pos_frac=0.4, decimals=1)
  t = ood.gmean_threshold(scores, labels)
  # Brute force over every distinct score as threshold.
  best = max(np.unique(scores), key=lambda c: np.sqrt(np.prod(_rates(scores, labels, c))))
  assert t == best
  tpr, fpr = ood.tpr_fpr_at_threshold(scores, labels, t)
  assert (tpr, 1 - fpr) == pytest.approx(_rates(scores, labels, t))
  report = ood.gmean_report(scores, labels)
  assert report["threshold"] == t and report["diff"] == pytest.approx(tpr - fpr)
  assert report["gmean"] == pytest.approx(np.sqrt(tpr * (1 - fpr)))
  # Reference-code variant (sklearn's default drop_intermediate=True).
  fpr_s, tpr_s, thr_s = skm.roc_curve(labels, scores)
  expected = thr_s[np.argmax(np.sqrt(tpr_s * (1 - fpr_s)))]
  assert ood.gmean_threshold(scores, labels, drop_intermediate=True) == expected
  # All ID above all OOD: every point has G-mean 0 -> threshold inf, nothing flagged.
  assert ood.gmean_threshold(np.array([3.0, 2.0, 1.0, 0.0]), np.array([0, 0, 1, 1])) == np.inf


def _rates(scores, labels, t):
  """(TPR, TNR) of "OOD iff score >= t"."""
  pred = scores >= t
  return pred[labels].mean(), 1 - pred[~labels].mean()


def test_case_scores_reductions_and_fallbacks():
  rng = np.random.default_rng(0)
  s = rng.normal(size=(3, 8, 8))
  region = np.zeros((3, 8, 8), bool)
  region[0, 2:5, 2:5] = True  # case 0: own region
  fallback = np.zeros((3, 8, 8), np.int64)
  fallback[1, :4] = 1  # case 1: empty region -> fallback; case 2: both empty -> whole image
  for reduce, fn in (("mean", np.mean), ("max", np.max), ("p95", lambda v: np.percentile(v, 95))):
    out, source = ood.case_scores(s, region, reduce, fallback_masks=fallback, return_source=True)
    expected = [fn(s[0, 2:5, 2:5]), fn(s[1, :4]), fn(s[2])]
    np.testing.assert_allclose(out, expected)
    np.testing.assert_array_equal(source, [0, 1, 2])
  np.testing.assert_allclose(ood.case_scores(s, region)[1], s[1].mean())  # no fallback given
  with pytest.raises(ValueError, match="reduce"):
    ood.case_scores(s, region, "median")
  with pytest.raises(ValueError, match="shape"):
    ood.case_scores(s, region[:2])
  with pytest.raises(ValueError, match="non-finite"):
    ood.case_scores(np.full((1, 2, 2), np.nan), np.ones((1, 2, 2)))
