"""A small CNN image classifier (MedShift's classifier G at phantom scale)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlsup_jax.nn.layers import TORCH_BN_MOMENTUM


class SmallCNNClassifier(nn.Module):
  """`depth` × (two 3×3 Conv → BN → ReLU, then 2×2 max-pool), global average pool, linear head.

  Attributes:
    num_classes: K.
    base_width: channels of the first level; each level doubles them.
    depth: number of levels (each halves the resolution).
    dropout: dropout rate before the head (0 disables it).
    dtype: compute dtype (params stay float32).
  """

  num_classes: int
  base_width: int = 16
  depth: int = 3
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """`x: [B, H, W, C]` → `{"logits": [B, K], "features": [B, F]}` (F = base_width·2^(depth−1))."""
    h = x.astype(self.dtype)
    for level in range(self.depth):
      for _ in range(2):
        h = nn.Conv(self.base_width * 2**level, (3, 3), use_bias=False, dtype=self.dtype)(h)
        h = nn.BatchNorm(
          use_running_average=not train, momentum=TORCH_BN_MOMENTUM, dtype=self.dtype
        )(h)
        h = nn.relu(h)
      h = nn.max_pool(h, (2, 2), strides=(2, 2))
    features = jnp.mean(h, axis=(1, 2))
    h = nn.Dropout(self.dropout, deterministic=not train)(features) if self.dropout else features
    logits = nn.Dense(self.num_classes, dtype=self.dtype)(h)
    return {"logits": logits.astype(jnp.float32), "features": features.astype(jnp.float32)}
