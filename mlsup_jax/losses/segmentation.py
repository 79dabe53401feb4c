"""Segmentation losses.

Every loss is pure and keyword-only: `loss(*, outputs, batch, **hparams) -> (value, metrics)`.
`cross_entropy` also has a per-pixel form (`reduction="none"` → `[B, *S]`) for methods that weight
pixels (MCPM, MW-Net, PINT); Dice has none (it is a ratio of sums).

**The Dice convention of this library** (used by every method; written down once here):
soft Dice on *probabilities* (sigmoid for one output channel, softmax otherwise),
`1 − (2 Σ p·g + smooth) / (Σ p + Σ g + smooth)` with `smooth = 1` by default. Sums run over the
whole batch and all pixels ("batch Dice") unless `per_sample=True`, which averages per-example
Dice losses. With several classes the loss is the mean over classes, background included unless
`include_background=False`. Examples with `batch["valid"] == 0` (evaluation padding) are ignored.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def probabilities_and_targets(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`logits: [B, *S, K]`, `labels: [B, *S]` int → `(probs, one_hot)`, both `[B, *S, K']`.

  One channel (K = 1) is a binary sigmoid output whose target is `labels == 1`; K > 1 is a
  softmax over K classes.
  """
  if logits.shape[-1] == 1:
    return jax.nn.sigmoid(logits), (labels[..., None] == 1).astype(logits.dtype)
  return jax.nn.softmax(logits, axis=-1), jax.nn.one_hot(
    labels, logits.shape[-1], dtype=logits.dtype
  )


def example_weights(batch: dict, batch_size: int) -> jax.Array:
  """`[B]` float weights: `batch["valid"]` (evaluation padding is 0) or ones."""
  return batch.get("valid", jnp.ones((batch_size,), jnp.float32)).astype(jnp.float32)


def mean_over_valid(per_pixel: jax.Array, batch: dict) -> jax.Array:
  """`per_pixel: [B, *S]` → the mean over pixels, then over the valid examples."""
  weights = example_weights(batch, per_pixel.shape[0])
  per_example = jnp.mean(per_pixel.reshape(per_pixel.shape[0], -1), axis=1)
  return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def soft_dice(
  *,
  outputs: dict,
  batch: dict,
  smooth: float = 1.0,
  per_sample: bool = False,
  include_background: bool = True,
):
  """Soft Dice loss (see the module docstring for the convention).

  Args:
    outputs: `logits: [B, *S, K]`.
    batch: `label: [B, *S]` int; optional `valid: [B]`.
    smooth: additive smoothing in numerator and denominator.
    per_sample: per-example Dice averaged over the batch instead of batch Dice.
    include_background: for K > 1, whether class 0 counts.

  Returns:
    `(loss, {"dice": 1 − loss})`.
  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.segmentation import soft_dice
    >>> label = jnp.array([[[0, 1], [1, 1]]])  # [B=1, 2, 2]
    >>> logits = jnp.where(label[..., None] == 1, 20.0, -20.0)  # a confident sigmoid output
    >>> loss, metrics = soft_dice(outputs={"logits": logits}, batch={"label": label}, smooth=0.0)
    >>> round(float(loss), 6), round(float(metrics["dice"]), 6)
    (0.0, 1.0)
  """
  probs, target = probabilities_and_targets(outputs["logits"], batch["label"])
  if probs.shape[-1] > 1 and not include_background:
    probs, target = probs[..., 1:], target[..., 1:]
  weights = example_weights(batch, probs.shape[0])
  weights = weights.reshape((-1,) + (1,) * (probs.ndim - 1))
  spatial = tuple(range(1, probs.ndim - 1))
  intersection = jnp.sum(probs * target * weights, axis=spatial)  # [B, K]
  denominator = jnp.sum((probs + target) * weights, axis=spatial)  # [B, K]
  if per_sample:
    dice = (2 * intersection + smooth) / (denominator + smooth)  # [B, K]
    w = weights.reshape(-1)
    dice = jnp.sum(jnp.mean(dice, axis=-1) * w) / jnp.maximum(jnp.sum(w), 1.0)
  else:
    dice = jnp.mean((2 * intersection.sum(0) + smooth) / (denominator.sum(0) + smooth))
  return 1.0 - dice, {"dice": dice}


def cross_entropy(
  *, outputs: dict, batch: dict, label_smoothing: float = 0.0, reduction: str = "mean"
):
  """Pixel-wise cross-entropy from logits (sigmoid BCE for K = 1, softmax CE for K > 1).

  Args:
    outputs: `logits: [B, *S, K]`.
    batch: `label: [B, *S]` int; optional `valid: [B]`.
    label_smoothing: optax-style smoothing of the one-hot targets (K > 1 only).
    reduction: "mean" — the mean over pixels, then over valid examples; "none" — the `[B, *S]`
      per-pixel losses (whose mean is the "mean" value when every example is valid).

  Returns:
    `(loss, {"cross_entropy": mean loss})`.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.segmentation import cross_entropy
    >>> logits = jnp.zeros((1, 2, 2, 2)); label = jnp.zeros((1, 2, 2), jnp.int32)
    >>> loss, _ = cross_entropy(outputs={"logits": logits}, batch={"label": label})
    >>> round(float(loss), 4)  # ln 2
    0.6931
    >>> cross_entropy(outputs={"logits": logits}, batch={"label": label}, reduction="none")[0].shape
    (1, 2, 2)
  """
  logits = outputs["logits"]
  labels = batch["label"]
  if logits.shape[-1] == 1:
    per_pixel = optax.sigmoid_binary_cross_entropy(
      logits[..., 0], (labels == 1).astype(logits.dtype)
    )
  else:
    target = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    target = optax.smooth_labels(target, label_smoothing) if label_smoothing else target
    per_pixel = optax.softmax_cross_entropy(logits, target)
  return reduce_pixels(per_pixel, batch, reduction, "cross_entropy")


def reduce_pixels(per_pixel: jax.Array, batch: dict, reduction: str, name: str):
  """A per-pixel term's result: `("mean": the mean over valid examples | "none": the `[B, *S]`
  map, {name: the mean})`."""
  mean = mean_over_valid(per_pixel, batch)
  if reduction == "none":
    return per_pixel, {name: mean}
  if reduction != "mean":
    raise ValueError(f"Unknown reduction {reduction!r}: use 'mean' or 'none'.")
  return mean, {name: mean}


def weighted_pixel_mean(loss_map: jax.Array, weights: jax.Array) -> jax.Array:
  """`mean(weights · loss_map)` over batch and pixels, not normalised by Σ weights.

  MW-Net's convention (`sum(cost · v) / len(cost)`): the weights scale the loss, so a meta
  network can switch the whole batch down. `loss_map, weights: [B, *S]` → scalar.
  """
  return jnp.mean(weights * loss_map)
