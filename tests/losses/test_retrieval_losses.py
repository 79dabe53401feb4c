"""PMS's loss terms against hand computations (thesis eq. 6.2–6.3)."""

import jax.numpy as jnp
import numpy as np
import pytest

from mlsup_jax.losses.retrieval import multilabel_bce, pms_proxy


def _cos(a, b):
  return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def test_pms_proxy_matches_the_equations_term_by_term():
  rng = np.random.default_rng(0)
  b, k, n = 5, 3, 4
  e = rng.normal(size=(b, k, n)).astype(np.float32)
  c = rng.normal(size=(k, n)).astype(np.float32)
  labels = np.array([[1, 0, 0], [1, 0, 1], [0, 0, 1], [0, 0, 1], [1, 0, 0]], np.float32)
  tau = np.array([0.3, 0.1, 0.6], np.float32)
  has = np.array([True, True, False])  # finding 2 has no proxy: no term at all
  expected = 0.0
  for i in range(k):
    if not has[i]:
      continue
    pos = [1 - _cos(c[i], e[j, i]) for j in range(b) if labels[j, i]]
    neg = [abs(-1 - _cos(c[i], e[j, i])) for j in range(b) if not labels[j, i]]
    # Finding 1 has no positive in the batch: that half is 0 (the code's empty-set rule).
    expected += (1 - tau[i]) * (np.mean(pos) if pos else 0.0) + tau[i] * np.mean(neg)
  expected /= k
  outputs = {"finding_embeddings": e, "proxies": c, "has_proxy": has, "prevalence": tau}
  loss, metrics = pms_proxy(outputs=outputs, batch={"labels": labels})
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  assert set(metrics) == {"pms_proxy", "pms_positive_cos", "pms_negative_cos"}


def test_pms_proxy_ignores_padded_examples():
  rng = np.random.default_rng(1)
  e = rng.normal(size=(4, 2, 3)).astype(np.float32)
  outputs = {
    "finding_embeddings": e,
    "proxies": rng.normal(size=(2, 3)).astype(np.float32),
    "has_proxy": np.array([True, True]),
    "prevalence": np.array([0.5, 0.2], np.float32),
  }
  labels = rng.integers(0, 2, (4, 2)).astype(np.float32)
  full, _ = pms_proxy(
    outputs={**outputs, "finding_embeddings": e[:2]}, batch={"labels": labels[:2]}
  )
  padded, _ = pms_proxy(
    outputs=outputs, batch={"labels": labels, "valid": np.array([1.0, 1.0, 0.0, 0.0])}
  )
  np.testing.assert_allclose(float(full), float(padded), rtol=1e-6)


def test_multilabel_bce_mean_and_sum_differ_by_k():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(3, 14)).astype(np.float32)
  labels = (rng.random((3, 14)) < 0.3).astype(np.float32)
  p = 1 / (1 + np.exp(-logits))
  bce = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
  mean, metrics = multilabel_bce(outputs={"finding_logits": logits}, batch={"labels": labels})
  total, _ = multilabel_bce(
    outputs={"finding_logits": logits}, batch={"labels": labels}, class_reduction="sum"
  )
  np.testing.assert_allclose(float(mean), bce.mean(), rtol=1e-5)
  np.testing.assert_allclose(float(total), bce.sum(1).mean(), rtol=1e-5)
  np.testing.assert_allclose(
    float(metrics["finding_accuracy"]), np.mean((logits > 0) == (labels > 0.5)), rtol=1e-6
  )
  with pytest.raises(ValueError, match="class_reduction"):
    multilabel_bce(outputs={"finding_logits": logits}, batch={"labels": labels},
                   class_reduction="max")  # fmt: skip


def test_pms_proxy_gradient_is_finite_for_zero_embeddings():
  import jax

  outputs = {
    "proxies": jnp.ones((2, 3)),
    "has_proxy": jnp.array([True, True]),
    "prevalence": jnp.array([0.5, 0.5]),
  }
  labels = jnp.array([[1.0, 0.0], [0.0, 1.0]])

  def f(e):
    return pms_proxy(outputs={**outputs, "finding_embeddings": e}, batch={"labels": labels})[0]

  grad = jax.grad(f)(jnp.zeros((2, 2, 3)))  # ReLU embeddings can be exactly 0
  assert np.all(np.isfinite(np.asarray(grad)))
