"""CVAD's cascade VAE (generator) and discriminator (thesis §4.2, spec S6.2–S6.3).

The thesis's description is not shape-consistent (a three-TConv D11 cannot be concatenated with
E11's output; the two definitions of D2 disagree; E2's width and the FC mappings are not stated),
so the layout follows the authors' public code, which is (spec S6.3; shapes for a 256² input):

    E11 = conv ×3 (16, 32, 64)          x → h_e        [B, 32, 32, 64]
    E12 = conv ×2 (128, 256)            h_e → e        [B, 8, 8, 256]
    latent 1: Dense μ1, log σ1² (512) on flatten(e); z1 = μ1 + ε σ1 (train) or μ1 (eval)
    D1 input: Dense(512 → 8·8·256) → reshape           [B, 8, 8, 256]
    D11 = tconv ×2 (128, 64)            → h_d          [B, 32, 32, 64]   (h_e's shape)
    D12 = tconv ×3 (32, 16, C)          h_d → I′1 = sigmoid(·)
    branch input f = concat(h_d, h_e)                  [B, 32, 32, 128]
    E2  = "conv": Conv 4×4 s2 (128) + BN + LReLU → flatten 16·16·128 = 32768  (thesis, default)
          "fc":   flatten f directly, 32·32·128 = 131072                      (public code)
    latent 2: Dense μ2, log σ2² (4·512 = 2048)
    D2 input: Dense(2048 → 32·32·64) → reshape to h_e's shape
    D2  = tconv ×3 (32, 16, C), the mirror of D12 with its own weights → I′2 = sigmoid(·)
    I′  = ½ (I′1 + I′2)

Every conv/tconv except the two output layers is followed by BatchNorm (PyTorch momentum 0.1,
eps 1e-5) and LeakyReLU(0.2). The branch's μ2/log σ2² Dense layers dominate the size: with
`branch_encoder="fc"` they hold 2 × 131072 × 2048 ≈ 537 M parameters at 256² (≈ 0.7 B in
total with `fc2`), i.e. ≈ 11 GB of fp32 parameters + Adam state; the thesis's E2 conv divides
them by 4 (≈ 134 M; ≈ 0.29 B in total, most of the rest being D2's 134 M input Dense). At 64²
every map is 16× smaller and the same layout works (h_e is 8×8, e is 2×2).

`I″` (the "minor disturbance" fake of the discriminator stage) is not specified by the thesis
and absent from the code. ASSUMPTION (spec S6.4): `I″ = decode(μ + δ)` for both latents, with
`δ ~ N(0, (s·std(μ))²)`, where std(μ) is taken over the latent dimensions of each example (so
the perturbation does not depend on the rest of the batch and works for B = 1). The branch's μ2
comes from the unperturbed pass.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlsup_jax.nn.autoencoder import (
  ConvBlock,
  ConvEncoder,
  ConvStack,
  check_spatial,
  encoder_widths,
)
from mlsup_jax.nn.vae import SAMPLE_RNG, GaussianLatent, LatentToMap

BRANCH_ENCODERS = ("conv", "fc")
# PyTorch BatchNorm1d(momentum=0.9) of the discriminator's hidden layer ↔ Flax momentum 0.1.
DISCRIMINATOR_HIDDEN_BN_MOMENTUM = 0.1


def perturb_latent(mu: jax.Array, scale: float, rng: jax.Array) -> jax.Array:
  """`μ + δ`, `δ ~ N(0, (scale·std(μ))²)` with std over each example's latent dims.

  Args:
    mu: `[B, K]` latent means.
    scale: the relative magnitude s.
    rng: PRNG key.

  Returns:
    `[B, K]`. The magnitude carries no gradient (it is a property of the data, not a target).
  """
  sigma = scale * jax.lax.stop_gradient(jnp.std(mu, axis=-1, keepdims=True))
  return mu + sigma * jax.random.normal(rng, mu.shape, mu.dtype)


class CascadeVAE(nn.Module):
  """CVAD's generator: a primary VAE and a branch VAE on its intermediate features.

  Attributes:
    base_width: channels of the first conv (16); each conv doubles, each tconv halves them.
    e11_depth: convs in E11 (3); h_e has `base·2^(e11_depth−1)` channels at `1/2^e11_depth`.
    e12_depth: convs in E12 (2); D11 has as many tconvs, so h_d matches h_e.
    latent_dim: size K of z1 (512).
    branch_latent_dim: size of z2; None = 4·K (2048, thesis).
    branch_encoder: "conv" (thesis E2: one Conv 4×4 s2 + BN + LReLU) or "fc" (public code:
      flatten the concatenation; ≈ 0.7 B parameters at 256²).
    branch_width: E2's channels; None = those of concat(h_d, h_e) (128).
    use_norm: BatchNorm after every hidden conv/tconv.
    activation: "leaky_relu" (slope 0.2) as in CVAD, or "relu".
    perturb_scale: s of the latent perturbation that makes I″ (ASSUMPTION, module docstring).
    out_channels: reconstruction channels; None = the input's.
    dtype: computation dtype (parameters and latent statistics stay float32).
  """

  base_width: int = 16
  e11_depth: int = 3
  e12_depth: int = 2
  latent_dim: int = 512
  branch_latent_dim: int | None = None
  branch_encoder: str = "conv"
  branch_width: int | None = None
  use_norm: bool = True
  activation: str = "leaky_relu"
  perturb_scale: float = 0.1
  out_channels: int | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, perturb: bool = False) -> dict[str, jax.Array]:
    """`x: [B, H, W, C]` in [0, 1], H and W multiples of `2^(e11_depth + e12_depth)`.

    Args:
      x: images.
      train: BatchNorm batch statistics (updated) and sampled latents; else running statistics
        and z = μ. Needs a `"sample"` RNG when `train` or `perturb`.
      perturb: also decode the perturbed latents into `perturbed` (I″). Decoding runs with the
        same `train` flag, so in training the BatchNorm statistics see that pass too.

    Returns:
      float32 `reconstruction` (I′), `reconstruction_primary` (I′1), `reconstruction_branch`
      (I′2), all `[B, H, W, C]` in [0, 1]; `mu1, logvar1: [B, K]`; `mu2, logvar2: [B, 4K]`;
      and `perturbed: [B, H, W, C]` when `perturb`.
    """
    if self.branch_encoder not in BRANCH_ENCODERS:
      raise ValueError(
        f"Unknown branch_encoder {self.branch_encoder!r}; expected one of {BRANCH_ENCODERS}."
      )
    if self.e11_depth < 1 or self.e12_depth < 1:
      raise ValueError("e11_depth and e12_depth must both be at least 1.")
    check_spatial(x, 2 ** (self.e11_depth + self.e12_depth), type(self).__name__)
    channels = self.out_channels or x.shape[-1]
    base, n11, n12 = self.base_width, self.e11_depth, self.e12_depth
    common = {"use_norm": self.use_norm, "activation": self.activation, "dtype": self.dtype}
    x = x.astype(self.dtype)

    # Primary VAE.
    h_e = ConvStack(encoder_widths(base, n11), name="e11", **common)(x, train)
    e = ConvStack(encoder_widths(base, n12, first_level=n11), name="e12", **common)(h_e, train)
    z1, mu1, logvar1 = GaussianLatent(self.latent_dim, self.dtype, name="latent1")(e, train)
    to_map1 = LatentToMap(e.shape[1:], self.dtype, name="d1_input")
    # D11 mirrors E12 and ends at h_e's width; D12 mirrors E11 and ends at the image.
    d11 = ConvStack(
      encoder_widths(base, n12, first_level=n11 - 1)[::-1], transpose=True, name="d11", **common
    )
    d12_widths = encoder_widths(base, n11 - 1)[::-1] + (channels,)
    d12 = ConvStack(d12_widths, transpose=True, raw_output=True, name="d12", **common)
    h_d = d11(to_map1(z1), train)
    logits1 = d12(h_d, train).astype(jnp.float32)

    # Branch VAE on f(x) = concat(h_d, h_e).
    f = jnp.concatenate([h_d, h_e], axis=-1)
    if self.branch_encoder == "conv":
      f = ConvBlock(self.branch_width or f.shape[-1], name="e2", **common)(f, train)
    branch_latent = self.branch_latent_dim or 4 * self.latent_dim
    z2, mu2, logvar2 = GaussianLatent(branch_latent, self.dtype, name="latent2")(f, train)
    to_map2 = LatentToMap(h_e.shape[1:], self.dtype, name="d2_input")
    d2 = ConvStack(d12_widths, transpose=True, raw_output=True, name="d2", **common)
    logits2 = d2(to_map2(z2), train).astype(jnp.float32)

    primary, branch = jax.nn.sigmoid(logits1), jax.nn.sigmoid(logits2)
    outputs = {
      # The authors' combination ½(σ(x1) + σ(x2)) keeps I′ in [0, 1] (spec S6.3).
      "reconstruction": 0.5 * (primary + branch),
      "reconstruction_primary": primary,
      "reconstruction_branch": branch,
      "mu1": mu1,
      "logvar1": logvar1,
      "mu2": mu2,
      "logvar2": logvar2,
    }
    if perturb:
      rng1, rng2 = jax.random.split(self.make_rng(SAMPLE_RNG))
      p1 = d12(d11(to_map1(perturb_latent(mu1, self.perturb_scale, rng1)), train), train)
      p2 = d2(to_map2(perturb_latent(mu2, self.perturb_scale, rng2)), train)
      outputs["perturbed"] = 0.5 * (
        jax.nn.sigmoid(p1.astype(jnp.float32)) + jax.nn.sigmoid(p2.astype(jnp.float32))
      )
    return outputs


class Discriminator(nn.Module):
  """CVAD's ID/OOD discriminator: 5 convs → Dense(512, no bias) → BN → ReLU → Dense(1).

  Each conv is 4×4 s2 p1 + BatchNorm + LeakyReLU(0.2) (`ConvEncoder`). The hidden BatchNorm
  uses the authors' PyTorch momentum 0.9, i.e. Flax momentum 0.1 (spec S8).

  Attributes:
    base_width, depth, use_norm, activation: the conv trunk's, see `ConvEncoder`.
    hidden_dim: width of the hidden Dense layer (512).
    dtype: computation dtype (parameters stay float32).
  """

  base_width: int = 16
  depth: int = 5
  use_norm: bool = True
  activation: str = "leaky_relu"
  hidden_dim: int = 512
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """`x: [B, H, W, C]` → logit `[B]` float32 (sigmoid = probability of OOD, label 1)."""
    h = ConvEncoder(
      self.base_width, self.depth, self.use_norm, self.activation, self.dtype, name="encoder"
    )(x, train)
    h = h.reshape(h.shape[0], -1)
    h = nn.Dense(self.hidden_dim, use_bias=False, dtype=self.dtype, name="hidden")(h)
    h = nn.BatchNorm(
      use_running_average=not train,
      momentum=DISCRIMINATOR_HIDDEN_BN_MOMENTUM,
      epsilon=1e-5,
      dtype=self.dtype,
      name="hidden_norm",
    )(h)
    h = nn.relu(h)
    return nn.Dense(1, dtype=self.dtype, name="logit")(h)[:, 0].astype(jnp.float32)
