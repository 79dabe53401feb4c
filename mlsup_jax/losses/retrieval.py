"""Loss terms of the retrieval methods (thesis ch. 6): PMS's classification and proxy terms.

PMS (§4.3–4.5) trains one embedding per finding, `finding_embeddings [B, k, N]`, with a
classification head per finding (`finding_logits [B, k]`):

* `multilabel_bce` — Σ or mean over findings of the per-finding BCE (the authors' code:
  `nn.BCELoss()`, the mean over batch × findings; the thesis writes the sum over findings — a
  factor k that changes λ's balance against the proxy term; `class_reduction` picks);
* `pms_proxy` — eq. 6.2–6.3: for each finding i with a proxy c_i,
  (1 − τ_i) · mean over positives of (1 − cos(c_i, e)) + τ_i · mean over negatives of
  |−1 − cos(c_i, e)|, summed over findings and divided by k. τ_i is finding i's prevalence in
  the training set. A finding with no positive (or no negative) in the batch contributes 0 to
  that half (masked means, as the code); a finding without a proxy (never positive while the
  bank filled) contributes nothing.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from mlsup_jax.losses.embeddings import l2_normalise
from mlsup_jax.losses.segmentation import example_weights

__all__ = ["multilabel_bce", "pms_proxy"]


def multilabel_bce(*, outputs: dict, batch: dict, class_reduction: str = "mean"):
  """BCE of `finding_logits [B, k]` against `labels [B, k]` (0 / 1).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.retrieval import multilabel_bce
    >>> loss, _ = multilabel_bce(outputs={"finding_logits": jnp.zeros((2, 3))},
    ...                          batch={"labels": jnp.ones((2, 3))})
    >>> round(float(loss), 4)  # log 2
    0.6931

  Args:
    outputs: `finding_logits: [B, k]`.
    batch: `labels: [B, k]`; optional `valid: [B]`.
    class_reduction: "mean" over findings (the code) or "sum" (the thesis).

  Returns:
    `(loss, {"multilabel_bce", "finding_accuracy"})`.
  """
  if class_reduction not in ("mean", "sum"):
    raise ValueError(f"class_reduction must be 'mean' or 'sum', got {class_reduction!r}.")
  logits = outputs["finding_logits"].astype(jnp.float32)
  labels = batch["labels"].astype(jnp.float32)
  weights = example_weights(batch, logits.shape[0])
  per_example = optax.sigmoid_binary_cross_entropy(logits, labels)
  per_example = per_example.mean(-1) if class_reduction == "mean" else per_example.sum(-1)
  total = jnp.maximum(jnp.sum(weights), 1.0)
  loss = jnp.sum(per_example * weights) / total
  correct = jnp.mean(((logits > 0) == (labels > 0.5)).astype(jnp.float32), -1)
  return loss, {"multilabel_bce": loss, "finding_accuracy": jnp.sum(correct * weights) / total}


def pms_proxy(*, outputs: dict, batch: dict):
  """PMS's proxy loss (module docstring).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.retrieval import pms_proxy
    >>> outputs = {"finding_embeddings": jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]]),  # [2, 1, 2]
    ...            "proxies": jnp.array([[1.0, 0.0]]), "has_proxy": jnp.array([True]),
    ...            "prevalence": jnp.array([0.5])}
    >>> loss, _ = pms_proxy(outputs=outputs, batch={"labels": jnp.array([[1.0], [0.0]])})
    >>> float(loss)  # positive: cos 1 → 0; negative: cos 0 → 0.5 · (1 + 0)
    0.5

  Args:
    outputs: `finding_embeddings: [B, k, N]`, `proxies: [k, N]` (fixed), `has_proxy: [k]`,
      `prevalence: [k]` τ.
    batch: `labels: [B, k]`; optional `valid: [B]`.

  Returns:
    `(loss, {"pms_proxy", "pms_positive_cos", "pms_negative_cos"})` (mean cosines of positives
    and negatives to their proxies, over findings with a proxy).
  """
  e = l2_normalise(outputs["finding_embeddings"].astype(jnp.float32))
  c = l2_normalise(outputs["proxies"].astype(jnp.float32))
  cos = jnp.einsum("bkn,kn->bk", e, c)  # [B, k]
  weights = example_weights(batch, e.shape[0])[:, None]
  labels = batch["labels"].astype(jnp.float32)
  positive, negative = labels * weights, (1.0 - labels) * weights
  tau = outputs["prevalence"].astype(jnp.float32)
  has = outputs["has_proxy"].astype(jnp.float32)

  def masked_mean(values, mask):
    return jnp.sum(values * mask, 0) / jnp.maximum(jnp.sum(mask, 0), 1.0)

  pos_term = (1.0 - tau) * masked_mean(1.0 - cos, positive)
  neg_term = tau * masked_mean(jnp.abs(-1.0 - cos), negative)
  k = cos.shape[1]
  loss = jnp.sum((pos_term + neg_term) * has) / k
  used = jnp.maximum(jnp.sum(has), 1.0)
  return loss, {
    "pms_proxy": loss,
    "pms_positive_cos": jnp.sum(masked_mean(cos, positive) * has) / used,
    "pms_negative_cos": jnp.sum(masked_mean(cos, negative) * has) / used,
  }
