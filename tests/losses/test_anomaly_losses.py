"""Tests of mlsup_jax.losses.anomaly (TEND and CVAD losses and scores).

Reference values are hand-computed or come from small numpy implementations of the documented
formulas (the authors' code where the spec quotes it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsup_jax import losses
from mlsup_jax.losses import LOSSES, anomaly


def _rng(seed=0):
  return np.random.default_rng(seed)


def _np_bce(logits, targets):
  p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
  y = np.asarray(targets, np.float64)
  return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def _np_kl(mu, logvar):
  return -0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar), axis=1)


# ----------------------------------------------------------------------------------------------
# Reconstruction.


def test_reconstruction_error_is_the_per_image_mse():
  rec = _rng(0).uniform(size=(3, 4, 5, 2)).astype(np.float32)
  img = _rng(1).uniform(size=(3, 4, 5, 2)).astype(np.float32)
  expected = ((rec - img) ** 2).reshape(3, -1).mean(axis=1)
  np.testing.assert_allclose(anomaly.reconstruction_error(rec, img), expected, rtol=1e-5)
  loss, metrics = anomaly.reconstruction_mse(outputs={"reconstruction": rec}, batch={"image": img})
  assert float(loss) == pytest.approx(expected.mean(), rel=1e-5)
  assert metrics["reconstruction_mse"] == loss
  # Padding examples (valid = 0) are ignored.
  loss, _ = anomaly.reconstruction_mse(
    outputs={"reconstruction": rec}, batch={"image": img, "valid": np.array([1, 0, 1])}
  )
  assert float(loss) == pytest.approx(expected[[0, 2]].mean(), rel=1e-5)
  assert float(anomaly.reconstruction_error(img, img).max()) == 0.0


# ----------------------------------------------------------------------------------------------
# TEND: classifier BCE, distances, margin, centre.


def test_binary_cross_entropy_has_the_minus_sign_and_matches_numpy():
  logits = np.array([-3.0, -0.5, 0.0, 0.7, 4.0], np.float32)
  targets = np.array([0.0, 1.0, 1.0, 0.0, 1.0], np.float32)
  value = float(anomaly.binary_cross_entropy(logits, targets))
  assert value > 0  # Eq. 4.2 as printed would be negative
  assert value == pytest.approx(_np_bce(logits, targets), rel=1e-5)
  # One example by hand: p = sigmoid(0) = 0.5 → −log 0.5.
  assert float(anomaly.binary_cross_entropy(np.zeros(1), np.ones(1))) == pytest.approx(np.log(2))
  # Confident and right ≈ 0; confident and wrong is large. Stable for huge logits.
  assert float(anomaly.binary_cross_entropy(np.array([30.0]), np.array([1.0]))) < 1e-6
  wrong = float(anomaly.binary_cross_entropy(np.array([200.0]), np.array([0.0])))
  assert wrong == pytest.approx(200.0, rel=1e-5)


def test_classification_bce_labels_originals_0_and_transformed_1():
  logits = np.array([-2.0, 1.0, 3.0, -1.0], np.float32)
  labels = np.array([0, 0, 1, 1])
  loss, metrics = anomaly.classification_bce(outputs={"logit": logits}, batch={"label": labels})
  assert float(loss) == pytest.approx(_np_bce(logits, labels), rel=1e-5)
  assert float(metrics["classification_accuracy"]) == pytest.approx(0.5)
  loss, metrics = anomaly.classification_bce(
    outputs={"logit": logits}, batch={"label": labels, "valid": np.array([1, 0, 1, 0])}
  )
  assert float(loss) == pytest.approx(_np_bce(logits[[0, 2]], labels[[0, 2]]), rel=1e-5)
  assert float(metrics["classification_accuracy"]) == 1.0


def test_classification_bce_label_smoothing_moves_the_targets_and_the_optimum():
  logits = np.array([-2.0, 1.0, 3.0, -1.0], np.float32)
  labels = np.array([0, 0, 1, 1])
  eps = 0.2
  loss, metrics = anomaly.classification_bce(
    outputs={"logit": logits}, batch={"label": labels}, label_smoothing=eps
  )
  targets = labels * (1 - eps) + eps / 2
  assert float(loss) == pytest.approx(_np_bce(logits, targets), rel=1e-5)
  assert float(metrics["classification_accuracy"]) == pytest.approx(0.5)  # vs the hard labels
  # With smoothing the loss is minimised at the finite logit log((1 − ε/2) / (ε/2)), not at ∞.
  grad = jax.grad(
    lambda z: anomaly.classification_bce(
      outputs={"logit": z}, batch={"label": np.array([1])}, label_smoothing=eps
    )[0]
  )
  optimum = np.log((1 - eps / 2) / (eps / 2))
  assert abs(float(grad(jnp.array([optimum], jnp.float32))[0])) < 1e-6
  assert float(grad(jnp.array([optimum + 5.0], jnp.float32))[0]) > 0


def test_squared_distance_sums_over_the_feature_dims():
  features = _rng(2).normal(size=(4, 7)).astype(np.float32)
  centre = _rng(3).normal(size=(7,)).astype(np.float32)
  expected = ((features - centre) ** 2).sum(axis=1)
  np.testing.assert_allclose(anomaly.squared_distance(features, centre), expected, rtol=1e-5)
  # Not a root: distance 2 along one axis gives 4.
  assert float(anomaly.squared_distance(np.array([[2.0, 0.0]]), np.zeros(2))[0]) == 4.0


def test_margin_loss_with_known_distances():
  centre = np.zeros(2, np.float32)
  inside = np.array([[1.0, 2.0], [0.0, 1.0]], np.float32)  # d = 5, 1
  outside = np.array([[3.0, 0.0], [10.0, 0.0], [0.0, 7.0]], np.float32)  # d = 9, 100, 49
  # R = 50 thresholds the *squared* distance: relu(50 − d) = 41, 0, 1.
  expected = (5 + 1) / 2 + (41 + 0 + 1) / 3
  value = float(anomaly.margin_loss(inside, outside, centre, margin=50.0))
  assert value == pytest.approx(expected, rel=1e-6)
  # The same on a mixed batch with labels (0 = original, 1 = transformed).
  features = np.concatenate([inside, outside])
  labels = np.array([0, 0, 1, 1, 1])
  loss, metrics = anomaly.tend_margin(
    outputs={"features": features, "centre": centre}, batch={"label": labels}, margin=50.0
  )
  assert float(loss) == pytest.approx(expected, rel=1e-6)
  assert float(metrics["margin_in"]) == pytest.approx(3.0)
  assert float(metrics["margin_out"]) == pytest.approx(14.0)
  # Padding rows are dropped from both means.
  loss, _ = anomaly.tend_margin(
    outputs={"features": features, "centre": centre},
    batch={"label": labels, "valid": np.array([1, 0, 1, 1, 0])},
    margin=50.0,
  )
  assert float(loss) == pytest.approx(5 + 41 / 2, rel=1e-6)


def test_centre_uses_the_deep_svdd_eps_trick():
  feature_sum = np.array([0.05, -0.05, 0.5, -0.3, 0.0, 0.1], np.float32)
  centre = anomaly.centre_from_features(feature_sum, 1, eps=0.1)
  np.testing.assert_allclose(centre, [0.1, -0.1, 0.5, -0.3, 0.1, 0.1], rtol=1e-6)
  # The mean is taken first: 0.3 / 2 = 0.15 stays, 0.1 / 2 = 0.05 is pushed to 0.1.
  centre = anomaly.centre_from_features(np.array([0.3, 0.1, -0.1]), 2)
  np.testing.assert_allclose(centre, [0.15, 0.1, -0.1], rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# VAE / CVAE.


def test_gaussian_kl():
  assert np.all(np.asarray(anomaly.gaussian_kl(np.zeros((2, 5)), np.zeros((2, 5)))) == 0.0)
  # One dimension by hand: μ = 1, σ² = 1 → ½; μ = 0, log σ² = 1 → ½(e − 2).
  np.testing.assert_allclose(
    anomaly.gaussian_kl(np.array([[1.0], [0.0]]), np.array([[0.0], [1.0]])),
    [0.5, 0.5 * (np.e - 2)],
    rtol=1e-6,
  )
  mu = _rng(4).normal(size=(3, 6)).astype(np.float32)
  logvar = _rng(5).normal(size=(3, 6)).astype(np.float32)
  kl = np.asarray(anomaly.gaussian_kl(mu, logvar))
  np.testing.assert_allclose(kl, _np_kl(mu, logvar), rtol=1e-5)
  assert np.all(kl > 0)


def _vae_case(seed=0, batch=2, shape=(4, 4, 1), latent=3):
  rng = _rng(seed)
  image = rng.uniform(size=(batch, *shape)).astype(np.float32)
  outputs = {
    "reconstruction": rng.uniform(size=(batch, *shape)).astype(np.float32),
    "mu": rng.normal(size=(batch, latent)).astype(np.float32),
    "logvar": rng.normal(size=(batch, latent)).astype(np.float32) * 0.5,
  }
  return outputs, {"image": image}


def test_vae_loss_normalisations():
  outputs, batch = _vae_case()
  image = batch["image"]
  mse = np.mean((outputs["reconstruction"] - image) ** 2)
  kl_sum = _np_kl(outputs["mu"], outputs["logvar"]).sum()
  # Authors' code: mse_mean + KL summed over batch and latent, divided by B·H·W·C.
  loss, metrics = anomaly.vae_loss(outputs=outputs, batch=batch)
  assert float(loss) == pytest.approx(mse + kl_sum / image.size, rel=1e-5)
  assert float(metrics["kl"]) == pytest.approx(kl_sum / 2, rel=1e-5)
  # ELBO-style: KL per example, averaged over the batch; β scales it.
  loss, _ = anomaly.vae_loss(outputs=outputs, batch=batch, kl_normalisation="batch", beta=0.5)
  assert float(loss) == pytest.approx(mse + 0.5 * kl_sum / 2, rel=1e-5)
  with pytest.raises(ValueError, match="kl_normalisation"):
    anomaly.vae_loss(outputs=outputs, batch=batch, kl_normalisation="latent")


def _cvae_case(seed=0, batch=2, shape=(4, 4, 1)):
  rng = _rng(seed)
  primary = rng.uniform(size=(batch, *shape)).astype(np.float32)
  branch = rng.uniform(size=(batch, *shape)).astype(np.float32)
  outputs = {
    "reconstruction": 0.5 * (primary + branch),
    "reconstruction_primary": primary,
    "reconstruction_branch": branch,
    "mu1": rng.normal(size=(batch, 3)).astype(np.float32),
    "logvar1": rng.normal(size=(batch, 3)).astype(np.float32) * 0.5,
    "mu2": rng.normal(size=(batch, 12)).astype(np.float32),
    "logvar2": rng.normal(size=(batch, 12)).astype(np.float32) * 0.5,
  }
  return outputs, {"image": rng.uniform(size=(batch, *shape)).astype(np.float32)}


def test_cvae_loss_matches_the_authors_formula_and_eq_4_7():
  outputs, batch = _cvae_case()
  image = batch["image"]
  kl1 = _np_kl(outputs["mu1"], outputs["logvar1"])
  kl2 = _np_kl(outputs["mu2"], outputs["logvar2"])

  def mse(key):
    return np.mean((outputs[key] - image) ** 2)

  # cvad_loss.py: mse_mean(I′, x) + β·[KL1 + KL2] / (B·H·W·C).
  loss, metrics = anomaly.cvae_loss(outputs=outputs, batch=batch)
  code = mse("reconstruction") + (kl1.sum() + kl2.sum()) / image.size
  assert float(loss) == pytest.approx(code, rel=1e-5)
  assert float(metrics["kl1"]) == pytest.approx(kl1.mean(), rel=1e-5)
  assert float(metrics["kl2"]) == pytest.approx(kl2.mean(), rel=1e-5)
  assert float(metrics["reconstruction_mse_branch"]) == pytest.approx(
    mse("reconstruction_branch"), rel=1e-5
  )
  # α weights the KL terms when only the combined output is supervised.
  loss, _ = anomaly.cvae_loss(outputs=outputs, batch=batch, alpha1=2.0, alpha2=0.5, beta=3.0)
  weighted = mse("reconstruction") + 3.0 * (2.0 * kl1.sum() + 0.5 * kl2.sum()) / image.size
  assert float(loss) == pytest.approx(weighted, rel=1e-5)
  # Eq. 4.7 read literally: α1·L(VAE1) + α2·L(VAE2), each reconstructing x, KL per example.
  loss, _ = anomaly.cvae_loss(
    outputs=outputs,
    batch=batch,
    alpha1=2.0,
    alpha2=0.5,
    kl_normalisation="batch",
    reconstruction_target="separate",
  )
  separate = 2.0 * (mse("reconstruction_primary") + kl1.mean()) + 0.5 * (
    mse("reconstruction_branch") + kl2.mean()
  )
  assert float(loss) == pytest.approx(separate, rel=1e-5)
  with pytest.raises(ValueError, match="reconstruction_target"):
    anomaly.cvae_loss(outputs=outputs, batch=batch, reconstruction_target="both")


def test_cvae_example_loss_is_the_per_image_score_and_averages_to_the_loss():
  outputs, batch = _cvae_case(seed=1, batch=3)
  per_example = np.asarray(anomaly.cvae_example_loss(outputs, batch["image"]))
  assert per_example.shape == (3,)
  loss, _ = anomaly.cvae_loss(outputs=outputs, batch=batch)
  assert float(loss) == pytest.approx(per_example.mean(), rel=1e-5)
  # Each entry equals the loss of that image alone (the code scores with batch size 1).
  single = {k: v[1:2] for k, v in outputs.items()}
  alone, _ = anomaly.cvae_loss(outputs=single, batch={"image": batch["image"][1:2]})
  assert float(alone) == pytest.approx(per_example[1], rel=1e-5)
  loss, _ = anomaly.cvae_loss(outputs=outputs, batch={**batch, "valid": np.array([0, 1, 0])})
  assert float(loss) == pytest.approx(per_example[1], rel=1e-5)


# ----------------------------------------------------------------------------------------------
# CVAD discriminator.


def test_discriminator_loss_labels_real_0_and_fake_1():
  real = np.array([-2.0, 0.5], np.float32)
  fake = np.array([1.0, -0.3, 2.0], np.float32)
  value = float(anomaly.discriminator_loss(real, fake))
  assert value == pytest.approx(_np_bce(real, [0, 0]) + _np_bce(fake, [1, 1, 1]), rel=1e-5)
  # A perfect discriminator says ID (< 0) on real and OOD (> 0) on fakes; swapped, it pays.
  good = float(anomaly.discriminator_loss(np.array([-20.0]), np.array([20.0])))
  bad = float(anomaly.discriminator_loss(np.array([20.0]), np.array([-20.0])))
  assert good < 1e-6
  assert bad == pytest.approx(40.0, rel=1e-5)


def test_discriminator_bce_masks_padding_in_real_and_fake_blocks():
  real = np.array([-2.0, 0.5], np.float32)
  fake = np.array([1.0, -0.3, 2.0, 4.0], np.float32)  # I′ then I″ for the same two images
  loss, metrics = anomaly.discriminator_bce(
    outputs={"real_logit": real, "fake_logit": fake}, batch={}
  )
  assert float(loss) == pytest.approx(float(anomaly.discriminator_loss(real, fake)), rel=1e-6)
  assert float(metrics["discriminator_accuracy"]) == pytest.approx(4 / 6)
  loss, _ = anomaly.discriminator_bce(
    outputs={"real_logit": real, "fake_logit": fake}, batch={"valid": np.array([1, 0])}
  )
  expected = _np_bce(real[:1], [0]) + _np_bce(fake[[0, 2]], [1, 1])
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  with pytest.raises(ValueError, match="whole blocks"):
    anomaly.discriminator_bce(outputs={"real_logit": real, "fake_logit": fake[:3]}, batch={})


# ----------------------------------------------------------------------------------------------
# Scores.


def test_scores():
  prob = np.array([0.2, 0.9])
  distance = np.array([50.0, 600.0])
  # Thesis: λ p + (1 − λ) d / R.
  np.testing.assert_allclose(
    anomaly.tend_score(prob, distance, margin=500.0), [0.5 * 0.2 + 0.05, 0.45 + 0.6], rtol=1e-6
  )
  np.testing.assert_allclose(
    anomaly.tend_score(prob, distance, margin=100.0, lam=1.0), prob, rtol=1e-6
  )
  # Code: 0.9 p + 0.1 d̃.
  np.testing.assert_allclose(
    anomaly.tend_code_score(prob, np.array([0.0, 1.0])), [0.18, 0.91], rtol=1e-6
  )
  # CVAD: ½ (ŝ + p).
  np.testing.assert_allclose(
    anomaly.cvad_score(np.array([0.0, 1.0, 0.4]), np.array([0.0, 1.0, 0.8])),
    [0.0, 1.0, 0.6],
    rtol=1e-6,
  )


# ----------------------------------------------------------------------------------------------
# Registry and jit.


def test_registered_terms_combine_by_name_and_jit():
  outputs, batch = _cvae_case(seed=2)
  role = losses.LossRole(outputs=tuple(outputs))
  config = losses.loss_section(role, {"cvae": 1.0}, {"cvae": {"kl_normalisation": "batch"}})
  total, metrics = jax.jit(lambda o, b: losses.weighted_sum(config, outputs=o, batch=b))(
    outputs, batch
  )
  direct, _ = anomaly.cvae_loss(outputs=outputs, batch=batch, kl_normalisation="batch")
  assert float(total) == pytest.approx(float(direct), rel=1e-5)
  assert "kl1" in metrics and "loss/cvae" in metrics
  for name, function in [
    ("reconstruction_mse", anomaly.reconstruction_mse),
    ("classification_bce", anomaly.classification_bce),
    ("tend_margin", anomaly.tend_margin),
    ("vae", anomaly.vae_loss),
    ("cvae", anomaly.cvae_loss),
    ("discriminator_bce", anomaly.discriminator_bce),
  ]:
    assert LOSSES.get(name).function() is function


def test_losses_are_differentiable():
  features = jnp.asarray(_rng(6).normal(size=(4, 3)), jnp.float32)
  centre = jnp.ones(3)
  labels = jnp.array([0, 0, 1, 1])

  def loss(features):
    return anomaly.tend_margin(
      outputs={"features": features, "centre": centre}, batch={"label": labels}, margin=100.0
    )[0]

  grad = np.asarray(jax.grad(loss)(features))
  # In-distribution rows are pulled to the centre: ∂/∂c of mean d = 2(c − O)/n_in.
  np.testing.assert_allclose(grad[:2], (features[:2] - centre) * 2 / 2, rtol=1e-5)
  # Outliers inside the margin are pushed away: −2(c − O)/n_out.
  np.testing.assert_allclose(grad[2:], -(features[2:] - centre) * 2 / 2, rtol=1e-5)
