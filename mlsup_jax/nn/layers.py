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


def im2col_conv(x: jax.Array, kernel: jax.Array, strides: int, padding: int) -> jax.Array:
  """A 2-D convolution as one matmul over gathered patches (im2col).

  Args:
    x: `[B, H, W, C]`.
    kernel: `[kh, kw, C, F]` (HWIO, as `nn.Conv`'s).
    strides: the stride of both spatial axes.
    padding: zero padding on every side.

  Returns:
    `[B, H', W', F]`, equal to `lax.conv_general_dilated` with the same arguments.
  """
  kh, kw, c, f = kernel.shape
  xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  out_h = (xp.shape[1] - kh) // strides + 1
  out_w = (xp.shape[2] - kw) // strides + 1
  patches = [
    xp[:, i : i + strides * (out_h - 1) + 1 : strides, j : j + strides * (out_w - 1) + 1 : strides]
    for i in range(kh)
    for j in range(kw)
  ]
  return jnp.concatenate(patches, axis=-1) @ kernel.reshape(kh * kw * c, f)


def _use_im2col(im2col: bool | None) -> bool:
  # XLA:CPU convolutions over tiny maps (2×2 inputs of a 3×3 or 4×4 kernel) run 10–40× slower
  # than the same matmul; accelerators keep their native convolutions.
  return jax.default_backend() == "cpu" if im2col is None else im2col


def conv2d(x: jax.Array, kernel: jax.Array, strides: int, padding: int, im2col: bool | None):
  """`x: [B, H, W, C]`, `kernel: [kh, kw, C, F]` → the convolution (im2col on CPU by default)."""
  if _use_im2col(im2col):
    return im2col_conv(x, kernel, strides, padding)
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    window_strides=(strides, strides),
    padding=((padding, padding), (padding, padding)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )


class Conv4x4Stride2(nn.Module):
  """`nn.Conv(features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))`: halves H and W.

  Same parameters (`kernel: [4, 4, C_in, features]`, `bias`) and outputs; computed by `conv2d`,
  i.e. as a matmul on CPU (see `_use_im2col`).

  Attributes:
    features: output channels.
    use_bias: add a bias.
    dtype: computation dtype (parameters stay float32).
    im2col: force (True) or forbid (False) the matmul form; None = on CPU only.
  """

  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32
  im2col: bool | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`x: [B, H, W, C]` → `[B, H/2, W/2, features]`."""
    kernel = self.param(
      "kernel", nn.initializers.lecun_normal(), (4, 4, x.shape[-1], self.features), jnp.float32
    )
    y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), 2, 1, self.im2col)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(
        self.dtype
      )
    return y


# Phase a of a 4×4, stride-2 transposed conv reads kernel taps _PHASE_TAPS[a] at the 3×3
# neighbourhood offsets (−1, 0, +1); index 4 is a zero tap (the unused offset).
_PHASE_TAPS = ((0, 2, 4), (4, 1, 3))


class SubPixelConvTranspose(nn.Module):
  """`nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))`, fast on CPU.

  The same function with the same parameters (`kernel: [4, 4, C_in, features]`, `bias`), computed
  as one 3×3 convolution to `4·features` channels followed by a depth-to-space: output pixel
  `(2p + a, 2q + b)` only sees the inputs `p − 1 … p + 1`, through kernel taps that depend on the
  phase `(a, b)`. XLA:CPU runs a stride-2 transposed conv (an input-dilated conv) about 5–10×
  slower than this dense form (and that conv is a matmul on CPU, `conv2d`); on accelerators
  both are fine.

  Attributes:
    features: output channels.
    use_bias: add a bias.
    dtype: computation dtype (parameters stay float32).
    im2col: force (True) or forbid (False) the matmul form; None = on CPU only.
  """

  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32
  im2col: bool | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`x: [B, H, W, C]` → `[B, 2H, 2W, features]`."""
    b, h, w, c = x.shape
    kernel = self.param(
      "kernel", nn.initializers.lecun_normal(), (4, 4, c, self.features), jnp.float32
    )
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))  # tap 4 = 0
    taps = jnp.asarray(_PHASE_TAPS)
    # [3, 3, C, 2, 2, F]: phase (a, b) uses padded[taps[a]][:, taps[b]].
    phases = padded[taps[:, :, None, None], taps[None, None, :, :]]  # [2(a), 3, 2(b), 3, C, F]
    phases = phases.transpose(1, 3, 4, 0, 2, 5).reshape(3, 3, c, 4 * self.features)
    y = conv2d(x.astype(self.dtype), phases.astype(self.dtype), 1, 1, self.im2col)
    y = y.reshape(b, h, w, 2, 2, self.features).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(b, 2 * h, 2 * w, self.features)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y
