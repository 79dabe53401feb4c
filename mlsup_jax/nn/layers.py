"""Small building blocks shared by the networks."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch BatchNorm momentum 0.1 ↔ Flax momentum 0.9 (Flax's own default is 0.99).
TORCH_BN_MOMENTUM = 0.9


class PReLU(nn.Module):
  """Parametric ReLU with PyTorch's parameterisation.

  `flax.linen.PReLU` is a single scalar initialised to 0.01; PyTorch's is per-channel (or one
  shared value) initialised to 0.25, which SCU-Net relies on.

  Attributes:
    per_channel: one slope per channel (True) or one shared slope (False).
    init_value: initial slope.
  """

  per_channel: bool = True
  init_value: float = 0.25

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (x.shape[-1],) if self.per_channel else ()
    slope = self.param("slope", nn.initializers.constant(self.init_value), shape, jnp.float32)
    return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


class BNPReLU(nn.Module):
  """BatchNorm → per-channel PReLU."""

  eps: float = 1e-3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.BatchNorm(
      use_running_average=not train, momentum=TORCH_BN_MOMENTUM, epsilon=self.eps, dtype=self.dtype
    )(x)
    return PReLU()(x)


class ConvBNPReLU(nn.Module):
  """Conv (no bias) → BatchNorm → per-channel PReLU ("CBP" in the SCU-Net spec).

  Attributes:
    features: output channels.
    kernel: square kernel size.
    stride: spatial stride.
    eps: BatchNorm epsilon (SCU-Net's context blocks use 1e-3).
  """

  features: int
  kernel: int = 3
  stride: int = 1
  eps: float = 1e-3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    pad = (self.kernel - 1) // 2
    x = nn.Conv(
      self.features,
      (self.kernel, self.kernel),
      strides=(self.stride, self.stride),
      padding=((pad, pad), (pad, pad)),
      use_bias=False,
      dtype=self.dtype,
    )(x)
    return BNPReLU(eps=self.eps, dtype=self.dtype)(x, train)


def avg_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """PyTorch `AvgPool2d(3, 2, padding=1)`, count_include_pad: `[B, H, W, C] → [B, H/2, W/2, C]`."""
  return nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), count_include_pad=True)


def upsample_bilinear_2x(x: jax.Array) -> jax.Array:
  """Bilinear ×2 upsampling `[B, H, W, C] → [B, 2H, 2W, C]` (half-pixel centres; see scunet.py)."""
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), method="bilinear")
