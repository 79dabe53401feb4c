"""A plain U-Net in the nnU-Net style, for 2-D or 3-D inputs.

Each level is two `conv 3 → InstanceNorm → LeakyReLU(0.01)` blocks (nnU-Net's defaults); the
encoder down-samples with stride-2 convolutions and the decoder up-samples with stride-2
transposed convolutions and concatenates the skip connection. With `len(features) = L` the input
side must be a multiple of `2^(L-1)` along every spatial axis.

`UNetBackbone` returns the decoder's multi-scale features (the pixel decoder of the mask
transformer in `nn/kmax.py`); `UNet` adds a 1×1 classifier and is the per-pixel baseline (the
nnU-Net stand-in of MaxQuery's comparison). Instance norm keeps every example independent of the
rest of the batch, so a sharded step equals the single-device step exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class ConvNormAct(nn.Module):
  """`conv (no bias) → InstanceNorm → LeakyReLU(0.01)` in `spatial_dims` dimensions."""

  features: int
  spatial_dims: int = 2
  kernel: int = 3
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(
      self.features,
      (self.kernel,) * self.spatial_dims,
      strides=(self.stride,) * self.spatial_dims,
      padding="SAME",
      use_bias=False,
      dtype=self.dtype,
    )(x)
    x = nn.InstanceNorm(epsilon=1e-5, dtype=self.dtype)(x)
    return nn.leaky_relu(x, 0.01)


class UNetBackbone(nn.Module):
  """U-Net encoder/decoder returning the decoder features at every scale.

  Attributes:
    features: channels per level, finest first, e.g. `(16, 32, 64, 128)`.
    spatial_dims: 2 (`[B, H, W, C]` inputs) or 3 (`[B, D, H, W, C]`).
    dropout_rate: dropout after every decoder level (0 disables it; MC Dropout needs it > 0).
    dtype: computation dtype (parameters stay float32).
  """

  features: Sequence[int] = (16, 32, 64, 128)
  spatial_dims: int = 2
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> list[jax.Array]:
    """`x: [B, *S, C]` → decoder features, coarsest first.

    Returns:
      `L` arrays: the bottleneck `[B, *S/2^(L-1), features[-1]]`, then each decoder level up to
      `[B, *S, features[0]]`.
    """
    if x.ndim != self.spatial_dims + 2:
      raise ValueError(
        f"UNet with spatial_dims={self.spatial_dims} expects [B, *S, C] of rank "
        f"{self.spatial_dims + 2}, got shape {x.shape}."
      )
    factor = 2 ** (len(self.features) - 1)
    if any(n % factor for n in x.shape[1:-1]):
      raise ValueError(f"Spatial shape {x.shape[1:-1]} must be a multiple of {factor}.")
    d = self.spatial_dims
    skips = []
    for level, width in enumerate(self.features):
      stride = 1 if level == 0 else 2
      x = ConvNormAct(width, d, stride=stride, dtype=self.dtype)(x)
      x = ConvNormAct(width, d, dtype=self.dtype)(x)
      skips.append(x)
    outputs = [x]
    for skip, width in zip(skips[-2::-1], self.features[-2::-1], strict=True):
      x = nn.ConvTranspose(width, (2,) * d, strides=(2,) * d, use_bias=False, dtype=self.dtype)(x)
      x = jnp.concatenate([x, skip], axis=-1)
      x = ConvNormAct(width, d, dtype=self.dtype)(x)
      x = ConvNormAct(width, d, dtype=self.dtype)(x)
      if self.dropout_rate > 0:
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
      outputs.append(x)
    return outputs


class UNet(nn.Module):
  """U-Net per-pixel classifier: `[B, *S, C] → logits [B, *S, num_classes]`.

  With `embedding_dim > 0` it also returns pixel embeddings for contrastive losses (ACTION++'s
  choice: every decoder scale resized to full resolution and concatenated, then a projection
  `1×1 conv → ReLU → 1×1 conv`), as `{"logits": …, "embedding": [B, *S, embedding_dim],
  "latent": the bottleneck [B, *S/2^(L-1), features[-1]]}`.

  Attributes:
    num_classes: output classes.
    features, spatial_dims, dropout_rate, dtype: see `UNetBackbone`.
    embedding_dim: width of the pixel embedding (0: logits only).
    return_scales: also return the decoder's feature maps, coarsest first, as `"scales"` (for a
      head on top, e.g. MORSE); the output is then a dict with `"logits"`.
  """

  num_classes: int
  features: Sequence[int] = (16, 32, 64, 128)
  spatial_dims: int = 2
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  embedding_dim: int = 0
  return_scales: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool):
    """`x: [B, *S, C]` → logits `[B, *S, num_classes]` (and the embedding, see above)."""
    scales = UNetBackbone(self.features, self.spatial_dims, self.dropout_rate, self.dtype)(
      x, train=train
    )
    kernel = (1,) * self.spatial_dims
    logits = nn.Conv(self.num_classes, kernel, dtype=self.dtype)(scales[-1]).astype(jnp.float32)
    extra = {"scales": tuple(scales)} if self.return_scales else {}
    if not self.embedding_dim:
      return {"logits": logits, **extra} if extra else logits
    full = scales[-1].shape[:-1]
    resized = [
      jax.image.resize(f, full + f.shape[-1:], "linear") if f.shape[:-1] != full else f
      for f in scales
    ]
    h = nn.relu(nn.Conv(self.embedding_dim, kernel, dtype=self.dtype)(jnp.concatenate(resized, -1)))
    embedding = nn.Conv(self.embedding_dim, kernel, dtype=self.dtype)(h)
    return {
      "logits": logits,
      "embedding": embedding.astype(jnp.float32),
      "latent": scales[0],  # the bottleneck, for image-level distillation
      **extra,
    }
