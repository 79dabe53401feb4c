"""Per-pixel consistency losses between a student's logits and a teacher's probabilities.

`probability_mse(logits, target_probs) -> [B, *S]` is the array function; `pseudo_label_mse` is
the registered loss term (`outputs: logits, target_probs`) with a per-pixel form. Class
probabilities follow the library convention (`losses/segmentation.py`): one output channel is a
sigmoid, read here as the two classes `[1 − σ, σ]`; K > 1 channels are a softmax.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlsup_jax.losses.segmentation import cross_entropy, reduce_pixels


def class_probabilities(logits: jax.Array) -> jax.Array:
  """`logits: [..., K]` → class probabilities `[..., max(K, 2)]` (K = 1: `[1 − σ, σ]`)."""
  if logits.shape[-1] == 1:
    p = jax.nn.sigmoid(logits)
    return jnp.concatenate([1.0 - p, p], axis=-1)
  return jax.nn.softmax(logits, axis=-1)


def probability_mse(logits: jax.Array, target_probs: jax.Array) -> jax.Array:
  """Per-pixel squared distance `‖p(logits) − target‖²` between probability vectors.

  The sum over classes (PINT's `L_mse(f_v, ŷ_v) = ‖f_v − ŷ_v‖²`); UA-MT's softmax-MSE averages
  the same squares over the K classes instead, i.e. it is this map divided by K. The target is
  treated as a constant (no gradient flows into it).

  Args:
    logits: `[B, *S, K]` student logits.
    target_probs: `[B, *S, max(K, 2)]` teacher probabilities (`class_probabilities` layout).

  Returns:
    `[B, *S]` values in `[0, 2]`.
  """
  probs = class_probabilities(logits)
  if probs.shape != target_probs.shape:
    raise ValueError(
      f"Student probabilities {probs.shape} and teacher probabilities {target_probs.shape} "
      "differ in shape."
    )
  diff = probs - jax.lax.stop_gradient(target_probs).astype(probs.dtype)
  return jnp.sum(diff * diff, axis=-1)


def pseudo_label_mse(*, outputs: dict, batch: dict, reduction: str = "mean"):
  """The loss term of `probability_mse` between the student and a teacher's pseudo-labels.

  Args:
    outputs: `logits: [B, *S, K]` (student), `target_probs: [B, *S, max(K, 2)]` (teacher).
    batch: optional `valid: [B]`.
    reduction: "mean" (over pixels, then valid examples) or "none" (`[B, *S]`).

  Returns:
    `(loss, {"pseudo_label_mse": mean loss})`.
  """
  per_pixel = probability_mse(outputs["logits"], outputs["target_probs"])
  return reduce_pixels(per_pixel, batch, reduction, "pseudo_label_mse")


def pseudo_label_ce(*, outputs: dict, batch: dict, reduction: str = "mean"):
  """Cross-entropy of the student against the teacher's hard labels (argmax of `target_probs`).

  FixMatch's and cross pseudo supervision's unsupervised loss; the confidence mask is the
  method's (a per-pixel weight).

  Args:
    outputs: `logits: [B, *S, K]`, `target_probs: [B, *S, max(K, 2)]`.
    batch: optional `valid: [B]`.
    reduction: "mean" or "none" (`[B, *S]`).

  Returns:
    `(loss, {"pseudo_label_ce": mean loss})`.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.consistency import pseudo_label_ce
    >>> target = jnp.array([[[0.9, 0.1]]])  # [B=1, 1 pixel, 2 classes]: label 0
    >>> loss, _ = pseudo_label_ce(outputs={"logits": jnp.zeros((1, 1, 2)), "target_probs": target},
    ...                           batch={})
    >>> round(float(loss), 4)  # ln 2
    0.6931
  """
  labels = jnp.argmax(outputs["target_probs"], axis=-1)
  per_pixel, _ = cross_entropy(
    outputs={"logits": outputs["logits"]}, batch={"label": labels}, reduction="none"
  )
  return reduce_pixels(per_pixel, batch, reduction, "pseudo_label_ce")
