"""Meta networks that turn training losses into sample weights (MCPM, MW-Net; seeds §2).

* `MetaMaskNet` — MCPM's meta mask network: a small fully convolutional network over the
  per-pixel loss map (optionally concatenated with the image) ending in a sigmoid, so every
  pixel gets a weight in [0, 1]. The paper gives no layer sizes (spec §2, NOT STATED): the
  default is two 3×3 conv + ReLU layers of 16 channels and a 1×1 output conv; `kernel_size=1`
  with `features=(100,)` is exactly MW-Net's 1→100→1 MLP applied per pixel.
* `MetaWeightNet` — MW-Net's VNet (`xjtushujun/meta-weight-net`): Linear(1, 100) → ReLU →
  Linear(100, 1) → sigmoid on the per-image loss, one weight per image.

Both are pure Flax modules; the bilevel update that trains them is in `methods/mcpm.py`. Their
output dtype is the computation dtype promoted to at least float32 (bf16 compute still gives
float32 weights; float64 compute, used by the finite-difference tests, stays float64).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def _output_dtype(dtype) -> Any:
  return jnp.promote_types(dtype, jnp.float32)


class MetaMaskNet(nn.Module):
  """Per-pixel weights from the loss map: `[B, *S]` (+ image `[B, *S, C]`) → `[B, *S]` ∈ [0, 1].

  Attributes:
    features: channels of the hidden conv + ReLU layers.
    kernel_size: side of the hidden convs (1: a per-pixel MLP).
    spatial_dims: 2 or 3.
    dtype: computation dtype.
  """

  features: Sequence[int] = (16, 16)
  kernel_size: int = 3
  spatial_dims: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, loss_map: jax.Array, image: jax.Array | None = None) -> jax.Array:
    """`loss_map: [B, *S]`, optional `image: [B, *S, C]` → weights `[B, *S]` in [0, 1]."""
    if loss_map.ndim != self.spatial_dims + 1:
      raise ValueError(
        f"MetaMaskNet with spatial_dims={self.spatial_dims} expects a loss map [B, *S] of rank "
        f"{self.spatial_dims + 1}, got shape {loss_map.shape}."
      )
    x = loss_map[..., None].astype(self.dtype)
    if image is not None:
      x = jnp.concatenate([x, image.astype(self.dtype)], axis=-1)
    for width in self.features:
      x = nn.Conv(width, (self.kernel_size,) * self.spatial_dims, padding="SAME", dtype=self.dtype)(
        x
      )
      x = nn.relu(x)
    x = nn.Conv(1, (1,) * self.spatial_dims, dtype=self.dtype)(x)
    return jax.nn.sigmoid(x[..., 0].astype(_output_dtype(self.dtype)))


class MetaWeightNet(nn.Module):
  """MW-Net's VNet: per-sample losses `[B]` → weights `[B]` in [0, 1].

  Attributes:
    hidden: hidden units (MW-Net: 100).
    dtype: computation dtype.
  """

  hidden: int = 100
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, losses: jax.Array) -> jax.Array:
    """`losses: [B]` → weights `[B]` in [0, 1]."""
    if losses.ndim != 1:
      raise ValueError(f"MetaWeightNet expects per-sample losses [B], got shape {losses.shape}.")
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(losses[:, None].astype(self.dtype)))
    x = nn.Dense(1, dtype=self.dtype)(x)
    return jax.nn.sigmoid(x[:, 0].astype(_output_dtype(self.dtype)))
