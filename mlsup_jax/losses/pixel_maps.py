"""Unreduced per-pixel loss maps, for methods that weight pixels (MCPM, MW-Net).

A pixel loss is pure and keyword-only: `loss(*, logits, labels, **hparams) -> [B, *S]`, one
value per pixel, with the same conventions as the reduced losses of `losses/segmentation.py`
(sigmoid for one output channel with target `label == 1`, softmax over K > 1 classes). Methods
choose one by name from `PIXEL_LOSSES` (e.g. `config.meta.pixel_loss`); a fork adds a function
and one table line.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mlsup_jax.core.registry import Registry


def pixel_cross_entropy(
  *, logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0
) -> jax.Array:
  """Per-pixel cross-entropy from logits.

  Args:
    logits: `[B, *S, K]`; K = 1 is a sigmoid output (binary CE with target `labels == 1`).
    labels: `[B, *S]` int class indices.
    label_smoothing: optax-style smoothing of the one-hot targets (K > 1 only).

  Returns:
    `[B, *S]` losses; their mean is `losses.segmentation.cross_entropy`.
  """
  if logits.shape[-1] == 1:
    return optax.sigmoid_binary_cross_entropy(logits[..., 0], (labels == 1).astype(logits.dtype))
  target = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  target = optax.smooth_labels(target, label_smoothing) if label_smoothing else target
  return optax.softmax_cross_entropy(logits, target)


def weighted_mean(loss_map: jax.Array, weights: jax.Array) -> jax.Array:
  """`mean(weights · loss_map)` over batch and pixels, not normalised by Σ weights.

  MW-Net's convention (`sum(cost · v) / len(cost)`): the weights scale the loss, so the meta
  network can switch the whole batch down. `loss_map, weights: [B, *S]` → scalar.
  """
  return jnp.mean(weights * loss_map)


PIXEL_LOSSES = Registry("pixel loss", {"cross_entropy": pixel_cross_entropy})
