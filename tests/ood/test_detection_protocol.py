"""Image-level detection protocol: threshold metrics, min–max, clean vs transductive."""

import numpy as np
import pytest
from sklearn import metrics as sk

from mlsup_jax.metrics import ood as ood_metrics
from mlsup_jax.ood import detection_protocol as protocol


def _scores(rng, n_id, n_ood, shift):
  scores = np.r_[rng.normal(0.0, 1.0, n_id), rng.normal(shift, 1.0, n_ood)]
  labels = np.r_[np.zeros(n_id, int), np.ones(n_ood, int)]
  return scores, labels


def test_threshold_report_matches_sklearn():
  rng = np.random.default_rng(0)
  scores, labels = _scores(rng, 70, 30, 1.0)
  for threshold in (-0.5, 0.3, 1.2, np.inf):
    report = ood_metrics.threshold_report(scores, labels, threshold)
    pred = scores >= threshold
    assert report["accuracy"] == pytest.approx(sk.accuracy_score(labels, pred))
    assert report["f1"] == pytest.approx(sk.f1_score(labels, pred, zero_division=0.0))
    assert report["precision"] == pytest.approx(sk.precision_score(labels, pred, zero_division=0))
    tpr, fpr = ood_metrics.tpr_fpr_at_threshold(scores, labels, threshold)
    assert (report["tpr"], report["fpr"]) == (tpr, fpr)
    assert report["diff"] == pytest.approx(tpr - fpr)


def test_minmax_uses_the_reference_range():
  scale = protocol.MinMax.fit([2.0, 4.0, 6.0])
  np.testing.assert_allclose(scale([2.0, 6.0, 8.0]), [0.0, 1.0, 1.5])
  np.testing.assert_allclose(protocol.MinMax.fit([3.0, 3.0])([3.0, 4.0]), [0.0, 1.0])
  with pytest.raises(ValueError, match="finite"):
    protocol.MinMax.fit([1.0, np.nan])


def test_clean_protocol_fits_threshold_and_normalisation_on_validation():
  rng = np.random.default_rng(1)
  test_rec, test_labels = _scores(rng, 200, 100, 1.5)
  val_rec, val_labels = _scores(rng, 60, 30, 1.5)
  # A second component on a shifted scale in the test set only: normalisation statistics from
  # the validation split cannot see the test set's range, the transductive ones do.
  test_prob = rng.uniform(0, 1, 300) + 5.0
  val_prob = rng.uniform(0, 1, 90)
  outputs = {
    "rec": test_rec,
    "prob": test_prob,
    "ood": test_labels,
    "calibration": {"rec": val_rec, "prob": val_prob, "ood": val_labels},
  }

  def combined(components, reference):
    return protocol.minmax_normalised(components["rec"], reference["rec"]) + components["prob"]

  score_fns = {"rec": lambda c, r: c["rec"], "combined": combined}
  clean, clean_scores = protocol.evaluate_scores(outputs, score_fns, "clean")
  trans, _ = protocol.evaluate_scores(outputs, score_fns, "transductive")
  # Clean: the threshold is the validation split's G-mean optimum, reported on the test set.
  t_val = ood_metrics.gmean_threshold(val_rec, val_labels)
  assert clean["rec"]["threshold"] == t_val
  assert clean["rec"] == pytest.approx(
    protocol.detection_report(test_rec, test_labels, val_rec, val_labels)
  )
  # Transductive: chosen on the test scores, so its G-mean is the best achievable on test.
  assert trans["rec"]["threshold"] == ood_metrics.gmean_threshold(test_rec, test_labels)
  assert trans["rec"]["gmean"] >= clean["rec"]["gmean"]
  # AUROC does not depend on the threshold.
  assert clean["rec"]["auroc"] == trans["rec"]["auroc"] == sk.roc_auc_score(test_labels, test_rec)
  # The combined score uses the validation range in the clean protocol.
  expected = (test_rec - val_rec.min()) / (val_rec.max() - val_rec.min()) + test_prob
  np.testing.assert_allclose(clean_scores["combined"], expected)
  # The shifted component breaks the validation threshold: everything is flagged OOD.
  assert clean["combined"]["fpr"] == 1.0 and trans["combined"]["fpr"] < 1.0
  flat = protocol.flatten_reports(clean, main="combined")
  assert flat["auroc"] == clean["combined"]["auroc"] and flat["rec/auroc"] == clean["rec"]["auroc"]


def test_protocol_errors_are_explicit():
  scores, labels = _scores(np.random.default_rng(2), 10, 5, 1.0)
  outputs = {"s": scores, "ood": labels}
  fns = {"s": lambda c, r: c["s"]}
  with pytest.raises(ValueError, match="calibration_source"):
    protocol.evaluate_scores(outputs, fns, "clean")
  with pytest.raises(ValueError, match="protocol"):
    protocol.evaluate_scores(outputs, fns, "inductive")
  only_id = {**outputs, "calibration": {"s": scores[:10], "ood": labels[:10]}}
  with pytest.raises(ValueError, match="one class"):
    protocol.evaluate_scores(only_id, fns, "clean")
  with pytest.raises(ValueError, match="both"):
    protocol.detection_report(scores, labels, threshold_scores=scores)
