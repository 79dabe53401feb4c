"""Convolutional auto-encoder and classifier of TEND (thesis §4.1, spec S5.2), shared by CVAD.

Every layer is a 4×4 convolution with stride 2 and padding 1 (thesis Table 4.1): a `Conv` halves
H and W exactly and a `ConvTranspose` with padding `k − 1 − p = 2` per side doubles them (spec
S8; `transpose_kernel` is left False because we train from scratch). With the defaults
(`base_width=16`, `depth=5`) a `[B, 256, 256, C]` image becomes a `[B, 8, 8, 256]` latent map and
back; a 64² phantom becomes `[B, 2, 2, 256]`. Inputs must be multiples of `2^depth`.

Decisions where the thesis and the authors' code disagree (spec S5.2, S7.4):

* BatchNorm after every conv (thesis) rather than none (code); `use_norm=False` gives the code's
  layout. Convolutions followed by BatchNorm have no bias (it would be cancelled by the mean
  subtraction), so parameter counts differ from PyTorch's by those few biases.
* BatchNorm uses PyTorch's defaults: momentum 0.1 (Flax 0.9, `TORCH_BN_MOMENTUM`), eps 1e-5.
* The last decoder layer has no BatchNorm or activation and returns logits; the auto-encoder
  applies a sigmoid, so reconstructions live in [0, 1] like the inputs (images are scaled to
  [0, 1], not mean/std normalised), and both an MSE and a BCE on them are well defined.
* `TendClassifier`'s FC maps the *actual* flatten size (512 × 4 × 4 = 8192 at 256²) to 512, as the
  code does; the thesis's FC(2048, 512) cannot be applied to a 256² input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlsup_jax.nn.layers import TORCH_BN_MOMENTUM, Conv4x4Stride2, SubPixelConvTranspose

ACTIVATIONS = ("relu", "leaky_relu")
# LeakyReLU slope of CVAD (spec S6.2); Flax's default is 0.01.
LEAKY_SLOPE = 0.2


def activate(x: jax.Array, activation: str) -> jax.Array:
  """`"relu"` or `"leaky_relu"` (slope 0.2, CVAD's)."""
  if activation == "relu":
    return nn.relu(x)
  if activation == "leaky_relu":
    return nn.leaky_relu(x, negative_slope=LEAKY_SLOPE)
  raise ValueError(f"Unknown activation {activation!r}; expected one of {ACTIVATIONS}.")


def check_spatial(x: jax.Array, factor: int, name: str) -> None:
  """Raises unless `x: [B, H, W, C]` with H and W multiples of `factor`."""
  if x.ndim != 4:
    raise ValueError(f"{name} expects [B, H, W, C] inputs, got shape {x.shape}.")
  if x.shape[1] % factor or x.shape[2] % factor:
    raise ValueError(
      f"{name}: spatial shape {x.shape[1:3]} must be multiples of {factor} (one halving per "
      "stride-2 layer)."
    )


def _conv(features: int, transpose: bool, use_bias: bool, dtype: Any, name: str) -> nn.Module:
  """A 4×4, stride-2 conv (halves H, W) or transposed conv (doubles H, W)."""
  if transpose:
    # = nn.ConvTranspose(features, (4, 4), (2, 2), padding=((2, 2), (2, 2))), same parameters,
    # computed densely (an input-dilated conv is 5–10× slower on XLA:CPU).
    return SubPixelConvTranspose(features, use_bias=use_bias, dtype=dtype, name=name)
  return Conv4x4Stride2(features, use_bias=use_bias, dtype=dtype, name=name)


class ConvBlock(nn.Module):
  """`(Transposed) conv 4×4 s2 p1 → BatchNorm → activation`.

  Attributes:
    features: output channels.
    transpose: ConvTranspose (×2 up-sampling) instead of Conv (×2 down-sampling).
    use_norm: BatchNorm after the conv (the conv then has no bias).
    activation: "relu" or "leaky_relu" (slope 0.2).
    dtype: computation dtype (parameters stay float32).
  """

  features: int
  transpose: bool = False
  use_norm: bool = True
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """`x: [B, H, W, C]` → `[B, H/2, W/2, features]` (or `[B, 2H, 2W, features]`)."""
    x = _conv(self.features, self.transpose, not self.use_norm, self.dtype, "conv")(x)
    if self.use_norm:
      x = nn.BatchNorm(
        use_running_average=not train,
        momentum=TORCH_BN_MOMENTUM,
        epsilon=1e-5,
        dtype=self.dtype,
        name="norm",
      )(x)
    return activate(x, self.activation)


class ConvStack(nn.Module):
  """A chain of `ConvBlock`s with the given widths, the last one optionally a raw output layer.

  Attributes:
    widths: output channels of each layer.
    transpose: transposed convs (decoder) instead of convs (encoder).
    raw_output: the last layer is a plain (transposed) conv with bias and no norm/activation,
      i.e. it returns logits.
    use_norm, activation, dtype: see `ConvBlock`.
  """

  widths: Sequence[int]
  transpose: bool = False
  raw_output: bool = False
  use_norm: bool = True
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """`x: [B, H, W, C]` → `[B, H·2^±n, W·2^±n, widths[-1]]` with `n = len(widths)`."""
    widths = tuple(self.widths)
    blocks = widths[:-1] if self.raw_output else widths
    for i, width in enumerate(blocks):
      x = ConvBlock(
        width, self.transpose, self.use_norm, self.activation, self.dtype, name=f"block_{i}"
      )(x, train)
    if self.raw_output:
      x = _conv(widths[-1], self.transpose, True, self.dtype, "output")(x)
    return x


def encoder_widths(base_width: int, depth: int, first_level: int = 0) -> tuple[int, ...]:
  """`base·2^i` for `i = first_level … first_level + depth − 1` (16, 32, 64, 128, 256)."""
  return tuple(base_width * 2 ** (first_level + i) for i in range(depth))


class ConvEncoder(nn.Module):
  """`depth` × [Conv 4×4 s2 p1 → BatchNorm → activation] with widths `base·2^i`.

  Attributes:
    base_width: channels of the first layer (16 in the thesis).
    depth: number of stride-2 layers (5 in the thesis).
    use_norm: BatchNorm after every conv (thesis) or none (TEND's public code).
    activation: "relu" (TEND) or "leaky_relu" (slope 0.2, CVAD).
    dtype: computation dtype (parameters stay float32).
  """

  base_width: int = 16
  depth: int = 5
  use_norm: bool = True
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """`x: [B, H, W, C]` → `[B, H/2^depth, W/2^depth, base·2^(depth−1)]`."""
    check_spatial(x, 2**self.depth, type(self).__name__)
    x = x.astype(self.dtype)
    for i, width in enumerate(encoder_widths(self.base_width, self.depth)):
      x = ConvBlock(width, False, self.use_norm, self.activation, self.dtype, name=f"block_{i}")(
        x, train
      )
    return x


class ConvDecoder(nn.Module):
  """Mirror of `ConvEncoder`: `depth` transposed convs, the last returning logits.

  Widths `base·2^(depth−2) … base`, then `out_channels`; BatchNorm + activation after every layer
  except the last. The caller applies the sigmoid (reconstructions then match inputs in [0, 1],
  and a BCE can use the logits directly).

  Attributes:
    out_channels: channels of the reconstruction.
    base_width, depth, use_norm, activation, dtype: see `ConvEncoder`.
  """

  out_channels: int
  base_width: int = 16
  depth: int = 5
  use_norm: bool = True
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """`x: [B, h, w, base·2^(depth−1)]` → logits `[B, h·2^depth, w·2^depth, out_channels]`."""
    hidden = encoder_widths(self.base_width, self.depth - 1)[::-1]
    for i, width in enumerate(hidden):
      x = ConvBlock(width, True, self.use_norm, self.activation, self.dtype, name=f"block_{i}")(
        x, train
      )
    return _conv(self.out_channels, True, True, self.dtype, "output")(x)


class AutoEncoder(nn.Module):
  """TEND stage 1 and the AE baseline: `ConvEncoder` → `ConvDecoder` → sigmoid.

  Attributes:
    base_width, depth, use_norm, activation, dtype: see `ConvEncoder`.
    out_channels: reconstruction channels; None = the input's.
  """

  base_width: int = 16
  depth: int = 5
  use_norm: bool = True
  activation: str = "relu"
  out_channels: int | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """`x: [B, H, W, C]` in [0, 1].

    Returns:
      `reconstruction: [B, H, W, C]` in [0, 1], `reconstruction_logits` (its pre-sigmoid values)
      and `latent: [B, H/2^depth, W/2^depth, base·2^(depth−1)]`, all float32.
    """
    latent = ConvEncoder(
      self.base_width, self.depth, self.use_norm, self.activation, self.dtype, name="encoder"
    )(x, train)
    logits = ConvDecoder(
      self.out_channels or x.shape[-1],
      self.base_width,
      self.depth,
      self.use_norm,
      self.activation,
      self.dtype,
      name="decoder",
    )(latent, train).astype(jnp.float32)
    return {
      "reconstruction": jax.nn.sigmoid(logits),
      "reconstruction_logits": logits,
      "latent": latent.astype(jnp.float32),
    }


class TendClassifier(nn.Module):
  """TEND stage 2: encoder → Conv(→512) + ReLU → flatten → FC = c → FC → logit.

  The encoder is a submodule named `encoder` with the same attributes as `AutoEncoder`'s, so
  `params["encoder"]` of a trained auto-encoder can be copied in unchanged.

  The FC maps the actual flatten size (`head_width × H/2^(depth+1) × W/2^(depth+1)`, 8192 at
  256²) to `feature_dim`, as the public code does; Table 4.1's FC(2048, 512) does not fit a 256²
  input (spec S5.2). The compressed feature `c` has no activation (the margin learner measures
  distances on it); the logit's sigmoid is the probability of "transformed / OOD".

  Attributes:
    base_width, depth, use_norm, activation, dtype: the encoder's, see `ConvEncoder`.
    head_width: channels of the classifier conv; None = twice the encoder's top width (512).
    head_norm: BatchNorm after the classifier conv (thesis: after every conv; code: none).
    feature_dim: size K of the compressed feature c (512).
    freeze_encoder: run the encoder with its running BatchNorm statistics and stop its gradient
      (the thesis's "fully frozen" encoder). Also mask the encoder out of the optimiser: a
      coupled weight decay would otherwise still move it.
  """

  base_width: int = 16
  depth: int = 5
  use_norm: bool = True
  activation: str = "relu"
  head_width: int | None = None
  head_norm: bool = False
  feature_dim: int = 512
  freeze_encoder: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """`x: [B, H, W, C]` with H, W multiples of `2^(depth+1)`.

    Returns:
      `features: [B, feature_dim]` (c) and `logit: [B]`, float32.
    """
    check_spatial(x, 2 ** (self.depth + 1), type(self).__name__)
    encoder = ConvEncoder(
      self.base_width, self.depth, self.use_norm, self.activation, self.dtype, name="encoder"
    )
    if self.freeze_encoder:
      e = jax.lax.stop_gradient(encoder(x, train=False))
    else:
      e = encoder(x, train)
    head_width = self.head_width or 2 * self.base_width * 2 ** (self.depth - 1)
    h = ConvBlock(head_width, False, self.head_norm, "relu", self.dtype, name="head")(e, train)
    h = h.reshape(h.shape[0], -1)
    c = nn.Dense(self.feature_dim, dtype=self.dtype, name="features")(h)
    logit = nn.Dense(1, dtype=self.dtype, name="logit")(c)
    return {"features": c.astype(jnp.float32), "logit": logit[:, 0].astype(jnp.float32)}
