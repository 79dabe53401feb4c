"""Embedding helpers shared by the contrastive and distillation losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPS = 1e-8


def l2_normalise(x: jax.Array) -> jax.Array:
  """`x [..., D]` scaled to unit length along the last axis (zero rows stay zero).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.embeddings import l2_normalise
    >>> l2_normalise(jnp.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
  """
  # Not `x / max(‖x‖, ε)`: the gradient of `‖x‖` at a zero row is 0 / 0, and a NaN there
  # poisons the whole backward pass even where the row's own cotangent is 0.
  squared = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(squared, EPS**2))
