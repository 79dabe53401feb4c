"""SCU-Net (Guo et al.; thesis §3.3): a small U-shaped network for breast arterial calcification.

Layout (spec S4.4, channel-last; `B, H, W` input, H and W multiples of 8):

| stage | operation | output |
|---|---|---|
| stem | CBP 3×3 s2 3→16, CBP 16→16, CBP 16→16 → f0 | H/2 × 16 |
| inject-1 | concat(f0, avgpool(x)) → BN → PReLU → Dropout(0.5) | H/2 × 19 |
| Dconv1 | context-guided down block (19→32, dilation 2, SE reduction 8) → f1 | H/4 × 32 |
| inject-2 | concat(f1, avgpool²(x)) → BN → PReLU → Dropout(0.5) | H/4 × 35 |
| Dconv2 | context-guided down block (35→64, dilation 4, SE reduction 16) → f2 | H/8 × 64 |
| Up-1 | bilinear ×2, concat f1, double conv 96→64→64 | H/4 × 64 |
| Up-2 | bilinear ×2, concat f0, double conv 80→32→32 | H/2 × 32 |
| Up-3 | bilinear ×2 | H × 32 |
| head | Conv 1×1 32→`num_classes` | H × num_classes (logits) |

Parameter count: **169,711** trainable parameters for 3 input channels and 1 class — exactly
the count of the authors' layout (U-Net's 13,395,329 / 169,711 = 79, the thesis's "79×"); the
test `tests/nn/test_scunet.py` checks it.

Choices (spec S7.3):
- The network returns **logits**; losses and inference apply the sigmoid. The authors' public
  `forward` never applies one (the paper checkpoint is "nosigmoid") while their Dice loss expects
  probabilities; here the Dice loss always sees probabilities.
- Bilinear upsampling uses `jax.image.resize` (half-pixel centres) instead of PyTorch's
  `align_corners=True`; we train from scratch, so only exact weight ports would notice.
- The unused modules of the public code (≈45 k parameters) are not built.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlsup_jax.nn.layers import (
  TORCH_BN_MOMENTUM,
  BNPReLU,
  ConvBNPReLU,
  PReLU,
  avg_pool_3x3_s2,
  upsample_bilinear_2x,
)


class GlobalContext(nn.Module):
  """F_glo: squeeze-and-excitation channel attention, `[B, H, W, C] → [B, H, W, C]`."""

  reduction: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    y = jnp.mean(x, axis=(1, 2))
    y = nn.relu(nn.Dense(channels // self.reduction, dtype=self.dtype)(y))
    y = nn.sigmoid(nn.Dense(channels, dtype=self.dtype)(y))
    return x * y[:, None, None, :]


class ContextGuidedDown(nn.Module):
  """CGNet's down-sampling context block (the thesis's "dilated conv block").

  CBP 3×3 s2 → [local depthwise 3×3 ‖ surrounding depthwise 3×3 dilated] → BN-PReLU →
  Conv 1×1 (2C→C) → F_glo. `[B, H, W, Cin] → [B, H/2, W/2, features]`.
  """

  features: int
  dilation: int
  reduction: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c, d = self.features, self.dilation
    x = ConvBNPReLU(c, kernel=3, stride=2, dtype=self.dtype)(x, train)
    local = nn.Conv(
      c, (3, 3), padding=((1, 1), (1, 1)), feature_group_count=c, use_bias=False, dtype=self.dtype
    )(x)
    surround = nn.Conv(
      c,
      (3, 3),
      padding=((d, d), (d, d)),
      kernel_dilation=(d, d),
      feature_group_count=c,
      use_bias=False,
      dtype=self.dtype,
    )(x)
    x = BNPReLU(dtype=self.dtype)(jnp.concatenate([local, surround], axis=-1), train)
    x = nn.Conv(c, (1, 1), use_bias=False, dtype=self.dtype)(x)
    return GlobalContext(self.reduction, dtype=self.dtype)(x)


class DoubleConv(nn.Module):
  """(Conv 3×3 with bias → BN → shared-slope PReLU) × 2."""

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    for _ in range(2):
      x = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype)(x)
      x = nn.BatchNorm(
        use_running_average=not train, momentum=TORCH_BN_MOMENTUM, epsilon=1e-5, dtype=self.dtype
      )(x)
      x = PReLU(per_channel=False)(x)
    return x


class ScuNet(nn.Module):
  """SCU-Net.

  Attributes:
    num_classes: output channels (1 for BAC: a sigmoid map).
    dropout_rate: dropout after each input-injection block (0.5 in the authors' code).
    dtype: compute dtype (params stay float32).
    return_scales: return `{"logits", "scales"}` with the decoder's feature maps, coarsest
      first (H/8 × 64, H/4 × 64, H/2 × 32), for a head on top (MORSE).
  """

  num_classes: int = 1
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32
  return_scales: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool):
    """`x: [B, H, W, C]` (H, W multiples of 8) → logits `[B, H, W, num_classes]`."""
    if x.ndim != 4 or x.shape[1] % 8 or x.shape[2] % 8:
      raise ValueError(f"ScuNet expects [B, H, W, C] with H, W multiples of 8; got {x.shape}.")
    x = x.astype(self.dtype)
    dt = self.dtype
    f0 = ConvBNPReLU(16, stride=2, dtype=dt)(x, train)
    f0 = ConvBNPReLU(16, dtype=dt)(f0, train)
    f0 = ConvBNPReLU(16, dtype=dt)(f0, train)
    inject1 = avg_pool_3x3_s2(x)
    inject2 = avg_pool_3x3_s2(inject1)

    h = BNPReLU(dtype=dt)(jnp.concatenate([f0, inject1], axis=-1), train)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    f1 = ContextGuidedDown(32, dilation=2, reduction=8, dtype=dt)(h, train)

    h = BNPReLU(dtype=dt)(jnp.concatenate([f1, inject2], axis=-1), train)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    f2 = ContextGuidedDown(64, dilation=4, reduction=16, dtype=dt)(h, train)

    up1 = DoubleConv(64, dtype=dt)(jnp.concatenate([f1, upsample_bilinear_2x(f2)], axis=-1), train)
    up2 = DoubleConv(32, dtype=dt)(jnp.concatenate([f0, upsample_bilinear_2x(up1)], axis=-1), train)
    logits = nn.Conv(self.num_classes, (1, 1), dtype=dt)(upsample_bilinear_2x(up2))
    logits = logits.astype(jnp.float32)
    if self.return_scales:
      return {"logits": logits, "scales": (f2, up1, up2)}
    return logits
