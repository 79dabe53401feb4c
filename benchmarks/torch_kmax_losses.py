"""The MaxQuery losses in PyTorch, for the torch leg's train step (channels-first).

Re-implementations of `losses/segmentation.py` and `losses/mask_transformer.py` for batches
without evaluation padding (every example valid): `semantic_log_probs` (MaskFormer semantic
inference as log-probabilities), the terms `cross_entropy`, `soft_dice` and
`query_distribution`, their `weighted_sum` over the active terms of `config.loss`, and
`deep_supervision`
(final layer + `aux_weight` × every decoder layer, labels down-sampled by striding,
`downsample_labels`). PyTorch is imported inside the functions, so importing this module needs
none.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlsup_jax.losses.layout import active_terms


def semantic_log_probs(mask_logits, class_logits):
  """MaskFormer semantic inference as log-probabilities, floored at 1e-30.

  Args:
    mask_logits: `[B, N, *S]`.
    class_logits: `[B, N, K]`.

  Returns:
    `[B, K, *S]` float32 `log Σ_n softmax_n(A) · softmax_k(class_logits)`.
  """
  assign = mask_logits.float().softmax(dim=1).flatten(2)  # [B, N, P]
  classes = class_logits.float().softmax(dim=-1).transpose(1, 2)  # [B, K, N]
  seg = (classes @ assign).reshape(*classes.shape[:2], *mask_logits.shape[2:])
  return seg.clamp_min(1e-30).log()


def cross_entropy(outputs: dict, labels, label_smoothing: float = 0.0):
  """Mean pixel CE of `logits [B, K, *S]` (sigmoid BCE of `labels == 1` when K = 1)."""
  from torch.nn import functional as F

  logits = outputs["logits"].float()
  if logits.shape[1] == 1:
    return F.binary_cross_entropy_with_logits(logits[:, 0], (labels == 1).float())
  return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def soft_dice(
  outputs: dict,
  labels,
  smooth: float = 1.0,
  per_sample: bool = False,
  include_background: bool = True,
):
  """`1 − soft Dice` of `logits [B, K, *S]` (the library's convention, batch Dice by default)."""
  from torch.nn import functional as F

  logits = outputs["logits"].float()
  if logits.shape[1] == 1:
    probs, target = logits.sigmoid(), (labels == 1).float()[:, None]
  else:
    probs = logits.softmax(dim=1)
    target = F.one_hot(labels, logits.shape[1]).movedim(-1, 1).float()
    if not include_background:
      probs, target = probs[:, 1:], target[:, 1:]
  spatial = tuple(range(2, probs.ndim))
  intersection = (probs * target).sum(dim=spatial)  # [B, K]
  denominator = (probs + target).sum(dim=spatial)  # [B, K]
  if per_sample:
    dice = ((2 * intersection + smooth) / (denominator + smooth)).mean(dim=1).mean()
  else:
    dice = ((2 * intersection.sum(0) + smooth) / (denominator.sum(0) + smooth)).mean()
  return 1.0 - dice


def query_distribution(
  outputs: dict,
  labels,
  query_split: Sequence[int] = (16, 4, 12),
  class_groups: Sequence[int] = (0, 1, 2, 2, 2),
  balance: str = "pixel",
):
  """The QD loss: `−log Σ_{n ∈ group(label)} softmax_n(A)`, averaged over pixels.

  Args:
    outputs: `mask_logits [B, N, *S]`.
    labels: `[B, *S]` int64.
    query_split: consecutive query-group sizes, summing to N.
    class_groups: the group of each class.
    balance: "pixel" (mean over pixels) or "group_balanced" (mean per target group, then over
      the groups present).
  """
  import torch
  from torch.nn import functional as F

  mask_logits = outputs["mask_logits"].float()
  if sum(query_split) != mask_logits.shape[1]:
    raise ValueError(f"query_split {tuple(query_split)} must sum to {mask_logits.shape[1]}.")
  device = mask_logits.device
  groups = torch.repeat_interleave(
    torch.arange(len(query_split), device=device), torch.tensor(list(query_split), device=device)
  )
  membership = F.one_hot(groups, len(query_split)).float()  # [N, G]
  assign = mask_logits.softmax(dim=1).flatten(2)  # [B, N, P]
  group_probs = (membership.T @ assign).reshape(
    mask_logits.shape[0], len(query_split), *mask_logits.shape[2:]
  )
  target = torch.tensor(list(class_groups), device=device)[labels]
  per_pixel = F.nll_loss(group_probs.clamp_min(1e-30).log(), target, reduction="none")
  if balance == "pixel":
    return per_pixel.mean()
  if balance != "group_balanced":
    raise ValueError(f"Unknown QD balance {balance!r}.")
  means = [per_pixel[target == g].mean() for g in range(len(query_split)) if (target == g).any()]
  return torch.stack(means).mean()


LOSSES = {
  "cross_entropy": cross_entropy,
  "soft_dice": soft_dice,
  "query_distribution": query_distribution,
}


def weighted_sum(loss_config, outputs: dict, labels):
  """`Σ weight · term(outputs, labels, **hparams)` over the active terms of a loss section."""
  total = 0.0
  for name, weight, hparams in active_terms(loss_config):
    total = total + weight * LOSSES[name](outputs, labels, **hparams)
  return total


def downsample_labels(labels, spatial: Sequence[int]):
  """`labels [B, *S]` → `[B, *spatial]`: the label at the centre of each `S / spatial` block."""
  full = tuple(labels.shape[1:])
  if full == tuple(spatial):
    return labels
  if any(f % s for f, s in zip(full, spatial, strict=True)):
    raise ValueError(f"Label shape {full} is not a multiple of the prediction shape {spatial}.")
  return labels[
    (slice(None), *(slice((f // s) // 2, None, f // s) for f, s in zip(full, spatial, strict=True)))
  ]


def deep_supervision(loss_config, outputs: dict, labels, aux_weight: float):
  """The MaxQuery loss: final layer + `aux_weight` × every decoder layer's loss.

  Args:
    loss_config: `config.loss` of a MaxQuery config.
    aux_weight: `config.train.deep_supervision_weight`.
    outputs: the `KMaX` output (`mask_logits [B, N, *S]`, `class_logits [B, N, K]`, `aux`).
    labels: `[B, *S]` int64.

  Returns:
    The scalar loss.
  """

  def layer_loss(prediction, layer_labels):
    logits = semantic_log_probs(prediction["mask_logits"], prediction["class_logits"])
    return weighted_sum(loss_config, {**prediction, "logits": logits}, layer_labels)

  total = layer_loss(outputs, labels)
  aux = 0.0
  for prediction in outputs["aux"]:
    aux = aux + layer_loss(
      prediction, downsample_labels(labels, prediction["mask_logits"].shape[2:])
    )
  return total + aux_weight * aux
