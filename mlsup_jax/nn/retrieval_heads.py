"""Retrieval networks on a ResNet backbone: PMS's class-wise embeddings (thesis ch. 6 §4.2).

`ClassWiseEmbedder`: the backbone's pooled feature f(x) [B, F] is decomposed into one embedding
per finding, `e_i(x) = ReLU(W_i f(x) + b_i)` (the ReLU is the authors' code's), computed as one
`Dense(k·N)` reshaped to `[B, k, N]`; each finding has its own linear head on its own embedding,
`logit_i = v_iᵀ e_i(x) + c_i` (a per-class einsum, not k separate layers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlsup_jax.nn.resnet import ResNet

__all__ = ["ClassWiseEmbedder"]


class ClassWiseEmbedder(nn.Module):
  """ResNet → `{"features": [B, F], "embeddings": [B, k, N], "logits": [B, k]}`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from mlsup_jax.nn.retrieval_heads import ClassWiseEmbedder
    >>> model = ClassWiseEmbedder(num_classes=14, embedding_dim=8, width_multiplier=0.125,
    ...                           small_input=True)
    >>> x = jnp.zeros((2, 32, 32, 1))
    >>> out = model.apply(model.init(jax.random.key(0), x, train=False), x, train=False)
    >>> out["embeddings"].shape, out["logits"].shape
    ((2, 14, 8), (2, 14))

  Attributes:
    num_classes: k findings.
    embedding_dim: N per finding (the thesis's d = 512; the authors' code 256).
    stage_sizes, width_multiplier, small_input: the ResNet backbone's (`nn/resnet.py`).
    relu: the ReLU on each class-wise embedding (code: on; off lets negatives reach cos −1).
    dtype: compute dtype.
  """

  num_classes: int
  embedding_dim: int = 512
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  width_multiplier: float = 1.0
  small_input: bool = False
  relu: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    features = ResNet(
      self.stage_sizes, self.width_multiplier, self.small_input, self.dtype, name="backbone"
    )(x, train=train)["features"]
    k, n = self.num_classes, self.embedding_dim
    e = nn.Dense(k * n, dtype=self.dtype, name="branches")(features).reshape(-1, k, n)
    e = nn.relu(e) if self.relu else e
    # Each finding's head is a Linear(N → 1): fan-in N (the last axis).
    init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", -1, -2)
    v = self.param("head_kernel", init, (k, n))
    c = self.param("head_bias", nn.initializers.zeros, (k,))
    logits = jnp.einsum("bkn,kn->bk", e.astype(jnp.float32), v) + c
    return {"features": features, "embeddings": e.astype(jnp.float32), "logits": logits}
