"""ACTION's distillation heads: pooled encoder features and pooled output maps → embeddings.

`latent(bottleneck)`: global average pooling of the U-Net bottleneck `[B, *s, C]`, then a two-layer
MLP to `latent_dim` (ACTION: 512 at 256² inputs); `predict(z)`: the student-only predictor (two
linear layers, as ISD/BYOL); `output(logits)`: the output map average-pooled to
`output_pool^d` cells and flattened (`[B, K · output_pool^d]`), ACTION's pooled "mask"
embedding; `predict_output(o)`: the student-only predictor of that embedding (two layers to
`output_dim`; the teacher side compares the pooled map itself, so `output_dim` must equal
`K · output_pool^d`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class DistillationHeads(nn.Module):
  """The latent head, the predictor and the output pooling (module docstring).

  Attributes:
    latent_dim: width of the latent embedding.
    output_pool: cells per axis of the pooled output map.
    output_dim: width of the pooled output embedding, `K · output_pool^d`.
  """

  latent_dim: int = 128
  output_pool: int = 4

  output_dim: int = 64

  def setup(self):
    self.latent_1 = nn.Dense(self.latent_dim)
    self.latent_2 = nn.Dense(self.latent_dim)
    self.predictor_1 = nn.Dense(self.latent_dim)
    self.predictor_2 = nn.Dense(self.latent_dim)
    self.output_predictor_1 = nn.Dense(self.output_dim)
    self.output_predictor_2 = nn.Dense(self.output_dim)

  def latent(self, bottleneck: jax.Array) -> jax.Array:
    pooled = jnp.mean(bottleneck, axis=tuple(range(1, bottleneck.ndim - 1)))
    return self.latent_2(nn.relu(self.latent_1(pooled)))

  def predict(self, z: jax.Array) -> jax.Array:
    return self.predictor_2(nn.relu(self.predictor_1(z)))

  def output(self, logits: jax.Array) -> jax.Array:
    batch, *spatial, channels = logits.shape
    cells = []
    for n in spatial:
      if n % self.output_pool:
        raise ValueError(f"Output side {n} is not a multiple of output_pool={self.output_pool}.")
      cells += [self.output_pool, n // self.output_pool]
    pooled = logits.reshape(batch, *cells, channels).mean(
      axis=tuple(range(2, 2 * len(spatial) + 1, 2))
    )
    return pooled.reshape(batch, -1)

  def predict_output(self, pooled: jax.Array) -> jax.Array:
    return self.output_predictor_2(nn.relu(self.output_predictor_1(pooled)))

  def __call__(self, bottleneck: jax.Array, logits: jax.Array):
    """Initialises / applies every head: `(latent, predicted latent, pooled output, predicted
    pooled output)`."""
    z = self.latent(bottleneck)
    o = self.output(logits)
    return z, self.predict(z), o, self.predict_output(o)
