"""Plain convolutional VAE: the VAE baseline of CVAD (thesis §4.2) and CVAD's primary VAE alone.

`ConvEncoder` → flatten → Dense μ, Dense log σ² (512) → z → Dense → reshape → `ConvDecoder` →
sigmoid. In training z = μ + ε·exp(½ log σ²) with ε drawn from the `"sample"` RNG stream; in
evaluation z = μ (the authors' code does the same, spec S6.3), so scoring is deterministic.
The latent statistics are returned in float32 whatever the compute dtype, because the KL and
`exp(log σ²)` are sensitive to bf16 rounding.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlsup_jax.nn.autoencoder import ConvDecoder, ConvEncoder

SAMPLE_RNG = "sample"


def reparameterise(mu: jax.Array, logvar: jax.Array, rng: jax.Array) -> jax.Array:
  """`z = μ + ε·exp(½ log σ²)`, `ε ~ N(0, I)`; `mu, logvar: [B, K]` → `[B, K]`."""
  eps = jax.random.normal(rng, mu.shape, mu.dtype)
  return mu + eps * jnp.exp(0.5 * logvar)


class GaussianLatent(nn.Module):
  """Flatten → Dense μ and Dense log σ² → z (sampled in training, μ in evaluation).

  Attributes:
    latent_dim: size K of z.
    dtype: computation dtype of the two Dense layers (parameters and outputs are float32).
  """

  latent_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, train: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`h: [B, ...]` → `(z, mu, logvar)`, each `[B, latent_dim]` float32."""
    h = h.reshape(h.shape[0], -1)
    mu = nn.Dense(self.latent_dim, dtype=self.dtype, name="mu")(h).astype(jnp.float32)
    logvar = nn.Dense(self.latent_dim, dtype=self.dtype, name="logvar")(h).astype(jnp.float32)
    z = reparameterise(mu, logvar, self.make_rng(SAMPLE_RNG)) if train else mu
    return z, mu, logvar


class LatentToMap(nn.Module):
  """Dense `K → h·w·c` (no activation, as in the authors' code) → reshape to `[B, h, w, c]`."""

  shape: tuple[int, int, int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h, w, c = self.shape
    x = nn.Dense(h * w * c, dtype=self.dtype, name="dense")(z.astype(self.dtype))
    return x.reshape(z.shape[0], h, w, c)


class VAE(nn.Module):
  """Convolutional VAE with a fully connected Gaussian latent.

  Attributes:
    base_width, depth, use_norm: see `ConvEncoder` (16, 5, BatchNorm).
    activation: "leaky_relu" (slope 0.2, CVAD's) by default; "relu" for TEND's blocks.
    latent_dim: size K of z (512).
    out_channels: reconstruction channels; None = the input's.
    dtype: computation dtype (parameters stay float32).
  """

  base_width: int = 16
  depth: int = 5
  use_norm: bool = True
  activation: str = "leaky_relu"
  latent_dim: int = 512
  out_channels: int | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """`x: [B, H, W, C]` in [0, 1]; needs a `"sample"` RNG when `train`.

    Returns:
      float32 `reconstruction: [B, H, W, C]` in [0, 1], `reconstruction_logits`,
      `mu, logvar, z: [B, latent_dim]`.
    """
    e = ConvEncoder(
      self.base_width, self.depth, self.use_norm, self.activation, self.dtype, name="encoder"
    )(x, train)
    z, mu, logvar = GaussianLatent(self.latent_dim, self.dtype, name="latent")(e, train)
    d = LatentToMap(e.shape[1:], self.dtype, name="latent_to_map")(z)
    logits = ConvDecoder(
      self.out_channels or x.shape[-1],
      self.base_width,
      self.depth,
      self.use_norm,
      self.activation,
      self.dtype,
      name="decoder",
    )(d, train).astype(jnp.float32)
    return {
      "reconstruction": jax.nn.sigmoid(logits),
      "reconstruction_logits": logits,
      "mu": mu,
      "logvar": logvar,
      "z": z,
    }
