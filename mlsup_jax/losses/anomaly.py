"""Losses and scores of TEND (thesis §4.1) and CVAD (thesis §4.2); spec S5.4, S5.6, S6.4, S6.6.

Two layers, all pure `jnp`:

* **Array helpers** (`reconstruction_error`, `binary_cross_entropy`, `squared_distance`,
  `margin_loss`, `centre_from_features`, `gaussian_kl`, `discriminator_loss`, the scores) take
  arrays and return arrays; methods call them directly.
* **Registered loss terms** (`reconstruction_mse`, `classification_bce`, `tend_margin`,
  `vae_loss`, `cvae_loss`, `discriminator_bce`) follow the house signature
  `loss(*, outputs, batch, **hparams) -> (scalar, metrics)` and are listed in `LOSSES`. Batches
  hold `image: [B, H, W, C]` in [0, 1], `label: [B]` where needed, and optionally `valid: [B]`
  (evaluation padding, weight 0).

Labels follow the thesis: **ID = 0, OOD = 1** — for TEND the originals are 0 and their
distortions 1; for CVAD's discriminator real images are 0 and reconstructions 1. Every score is
"higher = more OOD".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mlsup_jax.losses.segmentation import example_weights

KL_NORMALISATIONS = ("pixels", "batch")
CVAE_RECONSTRUCTION_TARGETS = ("combined", "separate")


def _weighted_mean(per_example: jax.Array, weights: jax.Array) -> jax.Array:
  """`[B]` values and `[B]` weights → their weighted mean (0 when all weights are 0)."""
  return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1.0)


# ----------------------------------------------------------------------------- array helpers


def reconstruction_error(reconstruction: jax.Array, image: jax.Array) -> jax.Array:
  """Per-image mean squared error (Eq. 4.1; the AE baseline's anomaly score).

  Args:
    reconstruction: `[B, H, W, C]`.
    image: `[B, H, W, C]`.

  Returns:
    `[B]` float32, the mean over pixels and channels of `(I − I′)²`.
  """
  diff = reconstruction.astype(jnp.float32) - image.astype(jnp.float32)
  return jnp.mean(jnp.square(diff).reshape(diff.shape[0], -1), axis=1)


def binary_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean BCE from logits: `−mean[y log p + (1 − y) log(1 − p)]`, `p = sigmoid(logit)`.

  The minus sign is the one Eq. 4.2 omits (spec S5.4); computing from logits is stable.

  Args:
    logits: `[N]` (any shape).
    targets: `[N]` in [0, 1] (1 = OOD / transformed).

  Returns:
    Scalar float32.
  """
  logits = logits.astype(jnp.float32)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets.astype(jnp.float32)))


def squared_distance(features: jax.Array, centre: jax.Array) -> jax.Array:
  """`‖c_i − O‖²` summed over the K feature dimensions (not a mean, not a root).

  Args:
    features: `[B, K]` compressed features c.
    centre: `[K]` centre O.

  Returns:
    `[B]` float32.
  """
  diff = features.astype(jnp.float32) - centre.astype(jnp.float32)
  return jnp.sum(jnp.square(diff), axis=-1)


def margin_loss(
  in_features: jax.Array, out_features: jax.Array, centre: jax.Array, margin: float
) -> jax.Array:
  """TEND's margin learner (Eqs. 4.3–4.4): `mean_i d_i + mean_j relu(R − d_j)`.

  `d` is the *squared* distance summed over the K dims, so the margin R thresholds a squared
  distance (R ∈ {150, 250, 500} in the thesis), not a radius. The thesis's index over K is read
  as a mean over the batch (spec S5.4).

  Args:
    in_features: `[B, K]` features of original (ID) images.
    out_features: `[B', K]` features of transformed (synthetic OOD) images.
    centre: `[K]`.
    margin: R.

  Returns:
    Scalar float32.
  """
  d_in = squared_distance(in_features, centre)
  d_out = squared_distance(out_features, centre)
  return jnp.mean(d_in) + jnp.mean(jax.nn.relu(margin - d_out))


def centre_from_features(feature_sum: jax.Array, count, eps: float = 0.1) -> jax.Array:
  """The centre O = mean of c over the ID training images, with DeepSVDD's ε-trick.

  Components with `|O_k| < eps` are pushed to `±eps` (sign kept), so that a feature map that
  collapses to 0 cannot reach the centre trivially. An exact 0 becomes `+eps` (DeepSVDD leaves
  it at 0; with an unactivated Dense output this never happens in practice).

  Args:
    feature_sum: `[K]`, Σ c over the images (accumulated by the caller over batches).
    count: number of images summed.
    eps: the threshold ε (0.1).

  Returns:
    `[K]` float32.
  """
  centre = feature_sum.astype(jnp.float32) / count
  pushed = jnp.where(centre < 0, -eps, eps)
  return jnp.where(jnp.abs(centre) < eps, pushed, centre)


def gaussian_kl(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """`KL(N(μ, σ²) ‖ N(0, I)) = −½ Σ (1 + log σ² − μ² − σ²)` per example.

  Args:
    mu: `[B, K]` (any trailing shape).
    logvar: same shape, log σ².

  Returns:
    `[B]` float32, summed over the latent dimensions.
  """
  mu, logvar = mu.astype(jnp.float32), logvar.astype(jnp.float32)
  kl = -0.5 * (1.0 + logvar - jnp.square(mu) - jnp.exp(logvar))
  return jnp.sum(kl.reshape(kl.shape[0], -1), axis=1)


def _kl_divisor(kl_normalisation: str, image: jax.Array) -> float:
  """What each example's KL is divided by: H·W·C ("pixels") or 1 ("batch")."""
  if kl_normalisation == "pixels":
    return float(image[0].size)
  if kl_normalisation == "batch":
    return 1.0
  raise ValueError(
    f"Unknown kl_normalisation {kl_normalisation!r}; expected one of {KL_NORMALISATIONS}."
  )


def vae_example_loss(
  reconstruction: jax.Array,
  image: jax.Array,
  mu: jax.Array,
  logvar: jax.Array,
  *,
  beta: float = 1.0,
  kl_normalisation: str = "pixels",
) -> jax.Array:
  """Per-example VAE loss `MSE_i + β·KL_i / n`; its batch mean is `vae_loss`.

  `n = H·W·C` for "pixels" (the authors' code: the batch's summed KL divided by B·H·W·C) and 1
  for "batch" (KL per example, averaged over the batch). "pixels" is the negative Gaussian ELBO
  `SSE + KL` (σ² = ½, constants dropped) scaled by `1/(H·W·C)`, so the KL looks tiny next to the
  MSE; "batch" weights the KL H·W·C times more.
  With batch size 1 this is CVAD's per-image anomaly score s1 (spec S6.6).

  Args:
    reconstruction, image: `[B, H, W, C]`.
    mu, logvar: `[B, K]`.
    beta: KL weight.
    kl_normalisation: "pixels" or "batch".

  Returns:
    `[B]` float32.
  """
  divisor = _kl_divisor(kl_normalisation, image)
  return reconstruction_error(reconstruction, image) + beta * gaussian_kl(mu, logvar) / divisor


def cvae_example_loss(
  outputs: dict,
  image: jax.Array,
  *,
  alpha1: float = 1.0,
  alpha2: float = 1.0,
  beta: float = 1.0,
  kl_normalisation: str = "pixels",
  reconstruction_target: str = "combined",
) -> jax.Array:
  """Per-example CVAE loss (Eq. 4.7); its batch mean is `cvae_loss`.

  * "combined" (the authors' code): only the combined output is supervised,
    `MSE(I′) + β·(α1·KL1 + α2·KL2) / n`.
  * "separate" (Eq. 4.7 read literally): each VAE reconstructs x,
    `α1·(MSE(I′1) + β·KL1/n) + α2·(MSE(I′2) + β·KL2/n)`.

  With α1 = α2 = β = 1 and "pixels", "combined" is exactly the code's `cvad_loss`.

  Args:
    outputs: `CascadeVAE` outputs (`reconstruction*`, `mu1`, `logvar1`, `mu2`, `logvar2`).
    image: `[B, H, W, C]`.
    alpha1, alpha2: weights of the primary and branch VAE.
    beta: KL weight.
    kl_normalisation: "pixels" or "batch" (see `vae_example_loss`).
    reconstruction_target: "combined" or "separate".

  Returns:
    `[B]` float32.
  """
  divisor = _kl_divisor(kl_normalisation, image)
  kl1 = beta * gaussian_kl(outputs["mu1"], outputs["logvar1"]) / divisor
  kl2 = beta * gaussian_kl(outputs["mu2"], outputs["logvar2"]) / divisor
  if reconstruction_target == "combined":
    return reconstruction_error(outputs["reconstruction"], image) + alpha1 * kl1 + alpha2 * kl2
  if reconstruction_target == "separate":
    primary = reconstruction_error(outputs["reconstruction_primary"], image) + kl1
    branch = reconstruction_error(outputs["reconstruction_branch"], image) + kl2
    return alpha1 * primary + alpha2 * branch
  raise ValueError(
    f"Unknown reconstruction_target {reconstruction_target!r}; expected one of "
    f"{CVAE_RECONSTRUCTION_TARGETS}."
  )


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """CVAD's discriminator BCE: `BCE(real, 0) + BCE(fake, 1)` (ID = 0, OOD = 1).

  Args:
    real_logits: `[B]` logits on original ID images.
    fake_logits: `[B']` logits on reconstructions I′ (and perturbed I″).

  Returns:
    Scalar float32, the sum of the two means (as the authors' code).
  """
  return binary_cross_entropy(real_logits, jnp.zeros_like(real_logits)) + binary_cross_entropy(
    fake_logits, jnp.ones_like(fake_logits)
  )


# ---------------------------------------------------------------------------------- scores


def tend_score(prob: jax.Array, distance: jax.Array, margin: float, lam: float = 0.5):
  """TEND's score as in the thesis: `λ·p + (1 − λ)·d / R` (spec S5.6).

  Args:
    prob: `[B]` classifier probability of "transformed / OOD".
    distance: `[B]` squared distance to the centre (`squared_distance`).
    margin: R used in training.
    lam: λ (0.5).

  Returns:
    `[B]`.
  """
  return lam * prob + (1.0 - lam) * distance / margin


def tend_code_score(
  prob: jax.Array, distance_minmax_normalised: jax.Array, distance_weight: float = 0.1
):
  """TEND's score as in the public code: `0.9·p + 0.1·d̃`.

  Args:
    prob: `[B]` classifier probability.
    distance_minmax_normalised: `[B]` distances min–max normalised by the caller (the code uses
      the test set's min and max; use ID validation data for a non-transductive variant).
    distance_weight: weight of d̃ (0.1).

  Returns:
    `[B]`.
  """
  return (1.0 - distance_weight) * prob + distance_weight * distance_minmax_normalised


def cvad_score(rec_error_normalised: jax.Array, disc_prob: jax.Array):
  """CVAD's score (Eq. 4.8 with a proper min–max): `½·(ŝ_cvae + p_dis)`.

  Args:
    rec_error_normalised: `[B]` per-image CVAE loss, min–max normalised by the caller.
    disc_prob: `[B]` discriminator probability of OOD on the original image.

  Returns:
    `[B]`.
  """
  return 0.5 * (rec_error_normalised + disc_prob)


# ------------------------------------------------------------------ registered loss terms


def reconstruction_mse(*, outputs: dict, batch: dict):
  """Auto-encoder loss (Eq. 4.1): per-image MSE averaged over the valid examples.

  Args:
    outputs: `reconstruction: [B, H, W, C]`.
    batch: `image: [B, H, W, C]`; optional `valid: [B]`.

  Returns:
    `(loss, {"reconstruction_mse": loss})`.
  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.anomaly import reconstruction_mse
    >>> image = jnp.zeros((2, 4, 4, 1))
    >>> outputs = {"reconstruction": image + 0.5}
    >>> float(reconstruction_mse(outputs=outputs, batch={"image": image})[0])
    0.25
  """
  image = batch["image"]
  per_example = reconstruction_error(outputs["reconstruction"], image)
  loss = _weighted_mean(per_example, example_weights(batch, image.shape[0]))
  return loss, {"reconstruction_mse": loss}


def classification_bce(*, outputs: dict, batch: dict, label_smoothing: float = 0.0):
  """TEND's classifier loss (Eq. 4.2 with its minus sign): BCE of `logit` vs `label`.

  Args:
    outputs: `logit: [B]`.
    batch: `label: [B]`, 0 = original, 1 = transformed; optional `valid: [B]`.
    label_smoothing: ε; targets become ε/2 and 1 − ε/2 so the logits stay finite (a
      classifier that separates the distortions perfectly otherwise drives p to exactly 0/1).

  Returns:
    `(loss, {"classification_bce", "classification_accuracy"})`.
  """
  logits = outputs["logit"].astype(jnp.float32)
  labels = batch["label"].astype(jnp.float32)
  targets = labels * (1.0 - label_smoothing) + 0.5 * label_smoothing
  weights = example_weights(batch, logits.shape[0])
  loss = _weighted_mean(optax.sigmoid_binary_cross_entropy(logits, targets), weights)
  accuracy = _weighted_mean(((logits > 0) == (labels > 0.5)).astype(jnp.float32), weights)
  return loss, {"classification_bce": loss, "classification_accuracy": accuracy}


def tend_margin(*, outputs: dict, batch: dict, margin: float = 250.0):
  """`margin_loss` on a mixed batch: label-0 rows are pulled in, label-1 rows pushed beyond R.

  The centre is model state (fixed after warm-up), so the method passes it in `outputs`.

  Args:
    outputs: `features: [B, K]`, `centre: [K]`.
    batch: `label: [B]`, 0 = original, 1 = transformed; optional `valid: [B]`.
    margin: R, a threshold on the *squared* distance.

  Returns:
    `(loss, {"margin_in", "margin_out"})`: the two means (each 0 if its group is empty).
  """
  distance = squared_distance(outputs["features"], outputs["centre"])
  weights = example_weights(batch, distance.shape[0])
  is_out = batch["label"].astype(jnp.float32)
  loss_in = _weighted_mean(distance, weights * (1.0 - is_out))
  loss_out = _weighted_mean(jax.nn.relu(margin - distance), weights * is_out)
  return loss_in + loss_out, {"margin_in": loss_in, "margin_out": loss_out}


def vae_loss(*, outputs: dict, batch: dict, beta: float = 1.0, kl_normalisation: str = "pixels"):
  """VAE loss, the batch mean of `vae_example_loss`.

  Args:
    outputs: `reconstruction: [B, H, W, C]`, `mu, logvar: [B, K]`.
    batch: `image: [B, H, W, C]`; optional `valid: [B]`.
    beta: KL weight (1).
    kl_normalisation: "pixels" (default, the authors' code) or "batch".

  Returns:
    `(loss, {"reconstruction_mse", "kl"})`, `kl` being the summed KL per example (unscaled).
  """
  image = batch["image"]
  weights = example_weights(batch, image.shape[0])
  per_example = vae_example_loss(
    outputs["reconstruction"],
    image,
    outputs["mu"],
    outputs["logvar"],
    beta=beta,
    kl_normalisation=kl_normalisation,
  )
  metrics = {
    "reconstruction_mse": _weighted_mean(
      reconstruction_error(outputs["reconstruction"], image), weights
    ),
    "kl": _weighted_mean(gaussian_kl(outputs["mu"], outputs["logvar"]), weights),
  }
  return _weighted_mean(per_example, weights), metrics


def cvae_loss(
  *,
  outputs: dict,
  batch: dict,
  alpha1: float = 1.0,
  alpha2: float = 1.0,
  beta: float = 1.0,
  kl_normalisation: str = "pixels",
  reconstruction_target: str = "combined",
):
  """CVAE loss (Eq. 4.7), the batch mean of `cvae_example_loss`.

  Args:
    outputs: `CascadeVAE` outputs.
    batch: `image: [B, H, W, C]`; optional `valid: [B]`.
    alpha1, alpha2, beta, kl_normalisation, reconstruction_target: see `cvae_example_loss`.

  Returns:
    `(loss, metrics)` with the MSE of I′, I′1 and I′2 and the unscaled KL of each latent.
  """
  image = batch["image"]
  weights = example_weights(batch, image.shape[0])
  per_example = cvae_example_loss(
    outputs,
    image,
    alpha1=alpha1,
    alpha2=alpha2,
    beta=beta,
    kl_normalisation=kl_normalisation,
    reconstruction_target=reconstruction_target,
  )

  def mse(key):
    return _weighted_mean(reconstruction_error(outputs[key], image), weights)

  metrics = {
    "reconstruction_mse": mse("reconstruction"),
    "reconstruction_mse_primary": mse("reconstruction_primary"),
    "reconstruction_mse_branch": mse("reconstruction_branch"),
    "kl1": _weighted_mean(gaussian_kl(outputs["mu1"], outputs["logvar1"]), weights),
    "kl2": _weighted_mean(gaussian_kl(outputs["mu2"], outputs["logvar2"]), weights),
  }
  return _weighted_mean(per_example, weights), metrics


def discriminator_bce(*, outputs: dict, batch: dict):
  """`discriminator_loss` with evaluation padding masked out.

  Args:
    outputs: `real_logit: [B]` (originals, label 0), `fake_logit: [n·B]` (I′, or I′ and I″
      concatenated, label 1).
    batch: optional `valid: [B]`, repeated for each block of B fakes.

  Returns:
    `(loss, {"discriminator_bce", "discriminator_accuracy"})`.
  """
  real = outputs["real_logit"].astype(jnp.float32)
  fake = outputs["fake_logit"].astype(jnp.float32)
  weights = example_weights(batch, real.shape[0])
  if fake.shape[0] % real.shape[0]:
    raise ValueError(f"fake_logit {fake.shape} must hold whole blocks of B = {real.shape[0]}.")
  fake_weights = jnp.tile(weights, fake.shape[0] // real.shape[0])
  loss_real = _weighted_mean(
    optax.sigmoid_binary_cross_entropy(real, jnp.zeros_like(real)), weights
  )
  loss_fake = _weighted_mean(
    optax.sigmoid_binary_cross_entropy(fake, jnp.ones_like(fake)), fake_weights
  )
  correct = jnp.sum((real < 0) * weights) + jnp.sum((fake > 0) * fake_weights)
  accuracy = correct / jnp.maximum(jnp.sum(weights) + jnp.sum(fake_weights), 1.0)
  loss = loss_real + loss_fake
  return loss, {"discriminator_bce": loss, "discriminator_accuracy": accuracy}
