"""Mask R-CNN's five loss terms (thesis Eq. 3.5 plus the RPN's), on the model's training outputs.

`nn/mask_rcnn.MaskRCNN` in training mode returns its predictions next to the sampled targets
(`detection/targets.py`), so each term is a masked mean:

* `rpn_objectness`: binary cross-entropy over the sampled anchors;
* `rpn_box`: smooth-L1 of the anchor deltas of the sampled positives;
* `roi_class`: `−log p` of the true class (object / background) over the sampled RoIs — Eq. 3.5's
  `L_cls`;
* `roi_box`: smooth-L1 of the RoI deltas of the positives — Eq. 3.5's `L_bbx`, written in the
  thesis on centroid, width and height; we regress the Faster R-CNN deltas the thesis's code
  (Matterport) regresses, which are those four quantities normalised by the RoI's size;
* `roi_mask`: per-pixel binary cross-entropy of the 28 × 28 masks of the positives — `L_mask`.

Smooth-L1 is `0.5 x²` for `|x| < 1`, else `|x| − 0.5`, summed over the four coordinates.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax


def _masked_mean(values, mask):
  mask = mask.astype(jnp.float32)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def smooth_l1(x: jnp.ndarray) -> jnp.ndarray:
  """Elementwise smooth-L1 (Huber with δ = 1)."""
  x = jnp.abs(x)
  return jnp.where(x < 1.0, 0.5 * x * x, x - 0.5)


def rpn_objectness(*, outputs: dict, batch: dict):
  """BCE of `rpn_logits [B, N]` vs `rpn_labels` over the sampled anchors (`rpn_weights`).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.detection import rpn_objectness
    >>> out = {"rpn_logits": jnp.zeros((1, 3)), "rpn_labels": jnp.array([[1., 0., 0.]]),
    ...        "rpn_weights": jnp.array([[1., 1., 0.]])}
    >>> round(float(rpn_objectness(outputs=out, batch={})[0]), 4)
    0.6931
  """
  del batch
  bce = optax.sigmoid_binary_cross_entropy(outputs["rpn_logits"], outputs["rpn_labels"])
  loss = _masked_mean(bce, outputs["rpn_weights"])
  return loss, {"rpn_objectness": loss}


def rpn_box(*, outputs: dict, batch: dict):
  """Smooth-L1 of `rpn_deltas [B, N, 4]` vs `rpn_target_deltas` over the sampled positives."""
  del batch
  error = smooth_l1(outputs["rpn_deltas"] - outputs["rpn_target_deltas"]).sum(-1)
  loss = _masked_mean(error, outputs["rpn_positive"])
  return loss, {"rpn_box": loss}


def roi_class(*, outputs: dict, batch: dict):
  """Cross-entropy of `roi_class_logits [B, R, 2]` vs `roi_labels` over the sampled RoIs."""
  del batch
  ce = optax.softmax_cross_entropy_with_integer_labels(
    outputs["roi_class_logits"], outputs["roi_labels"]
  )
  loss = _masked_mean(ce, outputs["roi_valid"])
  correct = jnp.argmax(outputs["roi_class_logits"], -1) == outputs["roi_labels"]
  return loss, {"roi_class": loss, "roi_accuracy": _masked_mean(correct, outputs["roi_valid"])}


def roi_box(*, outputs: dict, batch: dict):
  """Smooth-L1 of `roi_deltas [B, R, 4]` vs `roi_target_deltas` over the positive RoIs."""
  del batch
  error = smooth_l1(outputs["roi_deltas"] - outputs["roi_target_deltas"]).sum(-1)
  loss = _masked_mean(error, outputs["roi_positive"])
  return loss, {"roi_box": loss}


def roi_mask(*, outputs: dict, batch: dict):
  """Mean per-pixel BCE of `mask_logits [B, R, M, M]` vs `mask_targets` over positive RoIs."""
  del batch
  bce = optax.sigmoid_binary_cross_entropy(outputs["mask_logits"], outputs["mask_targets"])
  loss = _masked_mean(bce.mean(axis=(-2, -1)), outputs["mask_positive"])
  return loss, {"roi_mask": loss}
