"""Losses of the mask transformer (MaxQuery): semantic outputs, QD loss, deep supervision.

The segmentation terms are the library's `cross_entropy` and `soft_dice` applied to the
MaskFormer semantic log-probabilities (`nn/kmax.semantic_log_probs`): log-probabilities are
valid logits, so the same loss functions serve the per-pixel U-Net and the mask transformer.

**Query-distribution (QD) loss** (Yuan et al. CVPR 2023; the form is reconstructed [R] from
the paper's description "queries are split into groups for background, organ and tumour"):
queries are split by index into consecutive groups of sizes `query_split = (N1, N2, N3)`. With
`P = softmax_n(A)` the pixel's assignment distribution over the N queries and
`G_g = Σ_{n ∈ group g} P_n`, the loss is the cross-entropy `−log G_{group(label)}` averaged over
pixels, where `class_groups[k]` maps each inlier class to its group (background → 0,
organ → 1, every tumour class → 2). It forces tumour pixels onto the tumour queries only, so
an unseen tumour finds no centre that fits it well.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections

from mlsup_jax import losses as losses_lib
from mlsup_jax.losses.segmentation import example_weights, mean_over_valid
from mlsup_jax.nn.kmax import semantic_log_probs


def query_groups(query_split: Sequence[int]) -> jax.Array:
  """`(16, 4, 12)` → the group index of every query, `[N]` int32 (0…0, 1…1, 2…2)."""
  if not query_split or any(int(n) < 1 for n in query_split):
    raise ValueError(f"query_split must be positive group sizes, got {tuple(query_split)}.")
  return jnp.repeat(
    jnp.arange(len(query_split)), jnp.asarray(query_split), total_repeat_length=sum(query_split)
  )


def query_distribution(
  *,
  outputs: dict,
  batch: dict,
  query_split: Sequence[int] = (16, 4, 12),
  class_groups: Sequence[int] = (0, 1, 2, 2, 2),
  balance: str = "pixel",
):
  """The QD loss (module docstring).

  Args:
    outputs: `mask_logits: [B, *S, N]` pixel–query affinities.
    batch: `label: [B, *S]` int in `[0, len(class_groups))`; optional `valid: [B]`.
    query_split: group sizes; must sum to N.
    class_groups: the group of each class; values in `[0, len(query_split))`.
    balance: "pixel" — the mean over pixels (then valid examples), our reading of the paper;
      "group_balanced" — the mean over the pixels of each target group (over the batch), then
      over the groups present, so the few tumour pixels weigh as much as the background.

  Returns:
    `(loss, {"qd_loss": loss})`.
  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.mask_transformer import query_distribution
    >>> mask_logits = jnp.zeros((1, 2, 2, 4))  # every pixel spread evenly over 4 queries
    >>> loss, _ = query_distribution(outputs={"mask_logits": mask_logits},
    ...                              batch={"label": jnp.zeros((1, 2, 2), jnp.int32)},
    ...                              query_split=(2, 2), class_groups=(0, 1))
    >>> round(float(loss), 4)  # −ln(2/4): half the mass on the background group
    0.6931
  """
  mask_logits = outputs["mask_logits"]
  num_queries = mask_logits.shape[-1]
  if sum(query_split) != num_queries:
    raise ValueError(
      f"query_split {tuple(query_split)} sums to {sum(query_split)}, but the model has "
      f"{num_queries} queries."
    )
  if max(class_groups) >= len(query_split) or min(class_groups) < 0:
    raise ValueError(
      f"class_groups {tuple(class_groups)} must index the {len(query_split)} query groups."
    )
  groups = query_groups(query_split)  # [N]
  assign = jax.nn.softmax(mask_logits.astype(jnp.float32), axis=-1)
  membership = jax.nn.one_hot(groups, len(query_split), dtype=jnp.float32)  # [N, G]
  group_probs = assign @ membership  # [B, *S, G]: G_g = Σ_{n ∈ g} P_n
  log_group = jnp.log(jnp.maximum(group_probs, 1e-30))
  target_group = jnp.asarray(class_groups, jnp.int32)[batch["label"]]
  per_pixel = -jnp.take_along_axis(log_group, target_group[..., None], axis=-1)[..., 0]
  if balance == "pixel":
    loss = mean_over_valid(per_pixel, batch)
  elif balance == "group_balanced":
    weights = example_weights(batch, per_pixel.shape[0])
    weights = weights.reshape((-1,) + (1,) * (per_pixel.ndim - 1))
    in_group = (
      jax.nn.one_hot(target_group, len(query_split), dtype=jnp.float32) * weights[..., None]
    )
    axes = tuple(range(per_pixel.ndim))
    count = jnp.sum(in_group, axis=axes)  # [G]
    group_mean = jnp.sum(in_group * per_pixel[..., None], axis=axes) / jnp.maximum(count, 1.0)
    present = (count > 0).astype(jnp.float32)
    loss = jnp.sum(group_mean * present) / jnp.maximum(jnp.sum(present), 1.0)
  else:
    raise ValueError(f"Unknown QD balance {balance!r}: use 'pixel' or 'group_balanced'.")
  return loss, {"qd_loss": loss}


def layer_outputs(prediction: dict) -> dict:
  """A decoder layer's `{mask_logits, class_logits}` plus its semantic `logits` (log-probs)."""
  return {
    **prediction,
    "logits": semantic_log_probs(prediction["mask_logits"], prediction["class_logits"]),
  }


def downsample_labels(batch: dict, spatial: tuple[int, ...]) -> dict:
  """`batch` with `label [B, *S]` reduced to `[B, *spatial]` by nearest (strided) sampling.

  Each output pixel takes the label at the centre of its `S / spatial` block; other keys are
  unchanged. Raises ValueError when `S` is not a multiple of `spatial`.
  """
  label = batch["label"]
  full = label.shape[1:]
  if tuple(full) == tuple(spatial):
    return batch
  if any(f % s for f, s in zip(full, spatial, strict=True)):
    raise ValueError(f"Label shape {full} is not a multiple of the prediction shape {spatial}.")
  window = tuple(slice((f // s) // 2, None, f // s) for f, s in zip(full, spatial, strict=True))
  return {**batch, "label": label[(slice(None), *window)]}


def deep_supervision(
  loss_config: ml_collections.ConfigDict, *, outputs: dict, batch: dict, aux_weight: float
):
  """`Σ_layers weight · weighted_sum(loss terms)` over the final and every auxiliary layer.

  Auxiliary layers predict at their decoder scale; their labels are down-sampled to match
  (`downsample_labels`).

  Args:
    loss_config: the loss section (`config.loss`: each term's weight and hyper-parameters).
    outputs: the model output (`mask_logits`, `class_logits`, `aux`).
    batch: the training batch.
    aux_weight: weight of each auxiliary layer's loss (the final layer has weight 1).

  Returns:
    `(total, metrics)` with the final layer's metrics and `loss/aux` (the auxiliary sum).
  """
  final = layer_outputs(outputs)
  total, metrics = losses_lib.weighted_sum(loss_config, outputs=final, batch=batch)
  aux_total = jnp.zeros((), jnp.float32)
  for prediction in outputs["aux"]:
    layer_batch = downsample_labels(batch, prediction["mask_logits"].shape[1:-1])
    value, _ = losses_lib.weighted_sum(
      loss_config, outputs=layer_outputs(prediction), batch=layer_batch
    )
    aux_total = aux_total + value
  losses_lib.merge_metrics(metrics, {"loss/aux": aux_total}, "Deep supervision")
  return total + aux_weight * aux_total, metrics
