"""Losses for partially labelled multi-organ data (LTUDA and its baselines, seed 002).

Each training sample annotates only some organs; `batch["known"]: [B, O]` says which of the O
organs its label map covers. Label maps use 0 for "background or an organ this sample does not
annotate" and `o + 1` for organ o. Three families:

* `partial_bce` — LTUDA's linear head: one sigmoid channel per organ (`logits: [B, *S, O]`),
  BCE per channel, **masked per sample** to its known channels (the authors' code tests
  "channel known" with a batch-wide mean, so unknown samples still count in the denominator, and
  a batch where nothing is known gives NaN; here the mean runs over the known (sample, organ)
  pairs only and an all-unknown batch gives 0);
* `marginal_cross_entropy` — Shi et al. (MedIA 2021) marginal loss for a softmax head
  (`logits: [B, *S, 1 + O]`): a sample's unknown organs are merged into its background,
  `p'_bg = p_bg + Σ_{o unknown} p_o`, and the cross-entropy of the partial label is taken over the
  merged classes;
* `exclusion_dice` — Shi et al.'s exclusion loss: organs do not overlap, so a pixel labelled as
  organ j is a certain negative of every other organ k; the loss is the Dice overlap of each
  organ's predicted probability with the union of the other organs' labelled regions (lower is
  better), averaged over the organs that have such negatives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["exclusion_dice", "marginal_cross_entropy", "partial_bce"]


def _known(batch: dict, num_organs: int) -> jax.Array:
  known = jnp.asarray(batch["known"]).astype(bool)
  if known.ndim != 2 or known.shape[1] != num_organs:
    raise ValueError(
      f"batch['known'] must be [B, {num_organs}] (one flag per organ), got {known.shape}."
    )
  return known


def partial_bce(*, outputs: dict, batch: dict):
  """Per-sample masked BCE of sigmoid organ channels (module docstring).

  `known` may also be per pixel, `[B, *S, O]`: after cross-set region mixing a sample's pixels
  come from two sub-datasets. Then a channel's BCE is averaged over its known pixels, and a
  (sample, organ) pair counts when any of its pixels is known — for per-sample flags this is the
  same loss.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.partial_labels import partial_bce
    >>> logits = jnp.zeros((2, 1, 1, 2))  # p = 0.5 everywhere: BCE = ln 2 per known channel
    >>> batch = {"label": jnp.zeros((2, 1, 1), jnp.int32), "known": jnp.array([[1, 0], [0, 0]])}
    >>> loss, _ = partial_bce(outputs={"logits": logits}, batch=batch)
    >>> round(float(loss), 4)
    0.6931

  Args:
    outputs: `logits: [B, *S, O]`.
    batch: `label: [B, *S]` (0 = unannotated, o + 1 = organ o), `known: [B, O]` or
      `[B, *S, O]`.

  Returns:
    `(loss, {"known_fraction": known (sample, organ) pairs / all})`.
  """
  logits = outputs["logits"].astype(jnp.float32)
  num_organs = logits.shape[-1]
  known = jnp.asarray(batch["known"]).astype(bool)
  if known.shape == logits.shape:
    pixel_known = known.astype(jnp.float32)
  else:
    known = _known(batch, num_organs)
    pixel_known = known.reshape(known.shape[0], *(1,) * (logits.ndim - 2), num_organs)
    pixel_known = jnp.broadcast_to(pixel_known, logits.shape).astype(jnp.float32)
  target = jax.nn.one_hot(batch["label"] - 1, num_organs, dtype=jnp.float32)  # 0 → all zeros
  per_pixel = jnp.maximum(logits, 0) - logits * target + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  spatial = tuple(range(1, logits.ndim - 1))
  count = jnp.sum(pixel_known, axis=spatial)  # [B, O]
  per_channel = jnp.sum(per_pixel * pixel_known, axis=spatial) / jnp.maximum(count, 1.0)
  channel_known = count > 0
  pairs = jnp.sum(channel_known)
  loss = jnp.sum(jnp.where(channel_known, per_channel, 0.0)) / jnp.maximum(pairs, 1)
  return loss, {"known_fraction": pairs / channel_known.size}


def marginal_cross_entropy(*, outputs: dict, batch: dict):
  """Shi et al.'s marginal cross-entropy (module docstring).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.partial_labels import marginal_cross_entropy
    >>> logits = jnp.log(jnp.array([0.2, 0.5, 0.3]))[None, None, None]  # bg, organ 0, organ 1
    >>> batch = {"label": jnp.zeros((1, 1, 1), jnp.int32), "known": jnp.array([[False, True]])}
    >>> loss, _ = marginal_cross_entropy(outputs={"logits": logits}, batch=batch)
    >>> round(float(loss), 4)  # −ln(0.2 + 0.5): organ 0 is unknown, merged into background
    0.3567

  Args:
    outputs: `logits: [B, *S, 1 + O]` softmax logits (class 0 = background).
    batch: `label: [B, *S]`, `known: [B, O]`.
  """
  logits = outputs["logits"].astype(jnp.float32)
  known = _known(batch, logits.shape[-1] - 1)
  log_p = jax.nn.log_softmax(logits, axis=-1)
  extra = (1,) * (logits.ndim - 2)
  # Background absorbs the unknown organs: logsumexp over {bg} ∪ unknown.
  merged = jnp.concatenate([jnp.ones_like(known[:, :1]), ~known], axis=-1)  # [B, 1 + O]
  merged = merged.reshape(known.shape[0], *extra, -1)
  log_bg = jax.nn.logsumexp(jnp.where(merged, log_p, -jnp.inf), axis=-1)
  label = batch["label"]
  log_label = jnp.take_along_axis(log_p, label[..., None], axis=-1)[..., 0]
  per_pixel = -jnp.where(label == 0, log_bg, log_label)
  loss = jnp.mean(per_pixel)
  return loss, {"marginal_ce": loss}


def exclusion_dice(*, outputs: dict, batch: dict, smooth: float = 1.0):
  """Shi et al.'s exclusion loss as a Dice overlap (module docstring).

  Args:
    outputs: `logits: [B, *S, 1 + O]` softmax logits.
    batch: `label: [B, *S]` (labelled organs are the certain negatives of the others).
    smooth: additive smoothing.

  Returns:
    `(loss, {"exclusion_overlap": loss})`; 0 when no pixel is labelled with an organ.
  """
  logits = outputs["logits"].astype(jnp.float32)
  num_organs = logits.shape[-1] - 1
  probs = jax.nn.softmax(logits, axis=-1)[..., 1:]  # [B, *S, O]
  organ = jax.nn.one_hot(batch["label"] - 1, num_organs, dtype=jnp.float32)  # labelled organ
  labelled = jnp.sum(organ, axis=-1, keepdims=True)
  negatives = labelled - organ  # pixel labelled as another organ
  axes = tuple(range(probs.ndim - 1))
  overlap = jnp.sum(probs * negatives, axis=axes)
  size = jnp.sum(negatives, axis=axes)
  dice = (2 * overlap + smooth) / (size + jnp.sum(probs, axis=axes) + smooth)
  has = size > 0
  loss = jnp.sum(jnp.where(has, dice, 0.0)) / jnp.maximum(jnp.sum(has), 1)
  return loss, {"exclusion_overlap": loss}
