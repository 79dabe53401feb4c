"""Metric-learning loss terms on an image embedding: OSCARS and its five baselines (ch. 6 §3).

Every term reads `outputs["image_embedding"] [B, D]` and the batch's `class_id [B]` (OSCARS also its
pseudo intra-class label `bin [B]`), works on the whole (global) batch with fixed shapes —
sampling is in-batch, on device, with masks where a partner is missing — and returns the mean
over the anchors that have what the loss needs (`valid` padding rows are never anchors nor
partners).

| term                | paper                           | distance / similarity           |
|---------------------|---------------------------------|---------------------------------|
| `oscars_quadruplet` | OSCARS eq. 6.1                  | Euclidean (not squared), raw    |
| `triplet`           | DeepRank-style (Wang 2014)      | Euclidean, raw                  |
| `supcon`            | SupCon (Khosla et al. 2020)     | cosine / temperature            |
| `multi_similarity`  | Multi-Similarity (Wang 2019)    | cosine, with its pair mining    |
| `circle`            | Circle loss (Sun et al. 2020)   | cosine                          |
| `fastap`            | FastAP (Cakir et al. 2019)      | histogram of unit-vector distances |

No maintained JAX implementation of these exists; the per-anchor values are checked against
pytorch-metric-learning (where installed) and against hand-computed cases
(`tests/losses/test_metric_learning.py`).

OSCARS's quadruplet for anchor a: p from the same class and the same bin, n_intra from the same
class and another bin, n_inter from another class, each drawn uniformly among the batch's
candidates with `outputs["sample_key"]`; loss λ·max(d(a,p) − d(a,n_intra) + M_intra, 0) +
(1 − λ)·max(d(a,n_intra) − d(a,n_inter) + M_inter, 0), λ = 0.05, M_intra = 1, M_inter = 2. An
anchor whose bin has no other image in the batch uses p = a (d = 0: the intra term then only
asks n_intra to be ≥ M_intra away); an anchor without n_intra or n_inter is skipped.
The plain triplet draws p from the whole class: max(d(a,p) − d(a,n) + M, 0) with M = M_inter by
default, so the one difference from OSCARS is the intra-class structure.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlsup_jax.losses.embeddings import l2_normalise
from mlsup_jax.losses.segmentation import example_weights

__all__ = ["circle", "fastap", "multi_similarity", "oscars_quadruplet", "supcon", "triplet"]


def _pairs(batch: dict, b: int):
  """`(same class [B, B], different class [B, B], valid [B])` without self-pairs or padding."""
  labels = batch["class_id"].reshape(-1)
  valid = example_weights(batch, b) > 0
  both = valid[:, None] & valid[None, :]
  same = (labels[:, None] == labels[None, :]) & both & ~jnp.eye(b, dtype=bool)
  different = (labels[:, None] != labels[None, :]) & both
  return same, different, valid


def _euclidean(x: jax.Array) -> jax.Array:
  """`[B, B]` Euclidean distances with a finite gradient at 0 (the diagonal)."""
  squared = jnp.sum(jnp.square(x[:, None, :] - x[None, :, :]), -1)
  safe = jnp.where(squared > 0, squared, 1.0)
  return jnp.where(squared > 0, jnp.sqrt(safe), 0.0)


def _sample(key: jax.Array, candidates: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One uniformly drawn column per row among `candidates [B, B]` (Gumbel-max), and whether the
  row had any."""
  noise = jax.random.gumbel(key, candidates.shape)
  return jnp.argmax(jnp.where(candidates, noise, -jnp.inf), axis=1), candidates.any(axis=1)


def _mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  mask = mask.astype(jnp.float32)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def oscars_quadruplet_per_anchor(
  embedding, class_id, bins, key, valid=None, *, intra_weight=0.05, intra_margin=1.0,
  inter_margin=2.0,
):  # fmt: skip
  """`(loss [B], used [B], partners dict)` of OSCARS's quadruplet loss (module docstring)."""
  b = embedding.shape[0]
  batch = {"class_id": class_id} if valid is None else {"class_id": class_id, "valid": valid}
  same, different, valid = _pairs(batch, b)
  bins = bins.reshape(-1)
  same_bin = bins[:, None] == bins[None, :]
  k_p, k_intra, k_inter = jax.random.split(key, 3)
  p, has_p = _sample(k_p, same & same_bin)
  p = jnp.where(has_p, p, jnp.arange(b))  # p = a when the bin has no other image here
  n_intra, has_intra = _sample(k_intra, same & ~same_bin)
  n_inter, has_inter = _sample(k_inter, different)
  d = _euclidean(embedding.astype(jnp.float32))
  rows = jnp.arange(b)
  d_p, d_intra, d_inter = d[rows, p], d[rows, n_intra], d[rows, n_inter]
  l_intra = jax.nn.relu(d_p - d_intra + intra_margin)
  l_inter = jax.nn.relu(d_intra - d_inter + inter_margin)
  loss = intra_weight * l_intra + (1.0 - intra_weight) * l_inter
  used = valid & has_intra & has_inter
  partners = {"positive": p, "intra": n_intra, "inter": n_inter, "has_positive": has_p}
  return loss, used, partners


def oscars_quadruplet(
  *, outputs: dict, batch: dict, intra_weight: float = 0.05, intra_margin: float = 1.0,
  inter_margin: float = 2.0,
):  # fmt: skip
  """OSCARS's weighted two-triplet loss (eq. 6.1) on in-batch quadruplets.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from mlsup_jax.losses.metric_learning import oscars_quadruplet
    >>> x = jnp.array([[0.0, 0.0], [0.5, 0.0], [2.0, 0.0], [9.0, 0.0]])
    >>> batch = {"class_id": jnp.array([0, 0, 0, 1]), "bin": jnp.array([0, 0, 1, 0])}
    >>> loss, m = oscars_quadruplet(outputs={"image_embedding": x, "sample_key": jax.random.key(0)},
    ...                             batch=batch)
    >>> round(float(loss), 4) >= 0.0, float(m["quadruplet_coverage"])
    (True, 0.75)

  Args:
    outputs: `image_embedding: [B, D]`, `sample_key`: a PRNG key for the in-batch draws.
    batch: `class_id: [B]`, `bin: [B]` (pseudo intra-class label); optional `valid: [B]`.
    intra_weight: λ. intra_margin, inter_margin: M_intra, M_inter.

  Returns:
    `(loss, {"oscars_quadruplet", "quadruplet_coverage"})` — the coverage is the share of
    anchors with a full quadruplet.
  """
  loss, used, _ = oscars_quadruplet_per_anchor(
    outputs["image_embedding"], batch["class_id"], batch["bin"], outputs["sample_key"],
    batch.get("valid"), intra_weight=intra_weight, intra_margin=intra_margin,
    inter_margin=inter_margin,
  )  # fmt: skip
  value = _mean(loss, used)
  valid = example_weights(batch, loss.shape[0])
  coverage = jnp.sum(used) / jnp.maximum(jnp.sum(valid), 1.0)
  return value, {"oscars_quadruplet": value, "quadruplet_coverage": coverage}


def triplet_per_anchor(embedding, class_id, key, valid=None, *, margin=2.0):
  """`(loss [B], used [B])` of a random in-batch triplet per anchor."""
  b = embedding.shape[0]
  batch = {"class_id": class_id} if valid is None else {"class_id": class_id, "valid": valid}
  same, different, valid = _pairs(batch, b)
  k_p, k_n = jax.random.split(key)
  p, has_p = _sample(k_p, same)
  n, has_n = _sample(k_n, different)
  d = _euclidean(embedding.astype(jnp.float32))
  rows = jnp.arange(b)
  return jax.nn.relu(d[rows, p] - d[rows, n] + margin), valid & has_p & has_n


def triplet(*, outputs: dict, batch: dict, margin: float = 2.0):
  """DeepRank-style triplet loss on one random in-batch triplet per anchor (Euclidean).

  Args:
    outputs: `image_embedding: [B, D]`, `sample_key`.
    batch: `class_id: [B]`; optional `valid`.
    margin: M (default: OSCARS's inter-class margin).

  Returns:
    `(loss, {"triplet"})`.
  """
  loss, used = triplet_per_anchor(
    outputs["image_embedding"], batch["class_id"], outputs["sample_key"], batch.get("valid"),
    margin=margin,
  )  # fmt: skip
  value = _mean(loss, used)
  return value, {"triplet": value}


def _cosine_matrix(embedding):
  x = l2_normalise(embedding.astype(jnp.float32))
  return x @ x.T


def supcon_per_anchor(embedding, class_id, valid=None, *, temperature=0.1):
  """`(loss [B], used [B])`: −mean over positives p of log softmax_{a' ≠ a}(s_ap / T)."""
  b = embedding.shape[0]
  batch = {"class_id": class_id} if valid is None else {"class_id": class_id, "valid": valid}
  same, _, valid = _pairs(batch, b)
  logits = _cosine_matrix(embedding) / temperature
  others = valid[None, :] & ~jnp.eye(b, dtype=bool)
  logits = jnp.where(others, logits, -jnp.inf)
  log_prob = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
  count = jnp.sum(same, 1)
  loss = -jnp.sum(jnp.where(same, log_prob, 0.0), 1) / jnp.maximum(count, 1)
  return loss, valid & (count > 0)


def supcon(*, outputs: dict, batch: dict, temperature: float = 0.1):
  """Supervised contrastive loss (Khosla et al., L_out) on the L2-normalised embeddings.

  Args:
    outputs: `image_embedding: [B, D]`. batch: `class_id: [B]`; optional `valid`.
    temperature: T.

  Returns:
    `(loss, {"supcon"})`.
  """
  loss, used = supcon_per_anchor(
    outputs["image_embedding"], batch["class_id"], batch.get("valid"), temperature=temperature
  )
  value = _mean(loss, used)
  return value, {"supcon": value}


def _masked_logsumexp_plus_one(values, mask):
  """log(1 + Σ_{mask} exp(values)) per row (0 for an empty row)."""
  values = jnp.where(mask, values, -jnp.inf)
  top = jnp.maximum(jnp.max(values, axis=1, keepdims=True), 0.0)
  return (top + jnp.log(jnp.exp(-top) + jnp.sum(jnp.exp(values - top), 1, keepdims=True)))[:, 0]


def multi_similarity_per_anchor(
  embedding, class_id, valid=None, *, alpha=2.0, beta=50.0, base=0.5, mining_epsilon=0.1
):
  """`(loss [B], used [B])` of the Multi-Similarity loss after its pair mining.

  Mining (the paper's, `mining_epsilon` ε; < 0 disables it): a positive pair is kept when
  s_ap − ε < the anchor's hardest negative similarity, a negative pair when s_an + ε > the
  anchor's hardest positive (lowest) similarity.
  """
  b = embedding.shape[0]
  batch = {"class_id": class_id} if valid is None else {"class_id": class_id, "valid": valid}
  same, different, valid = _pairs(batch, b)
  s = _cosine_matrix(embedding)
  if mining_epsilon >= 0:
    hardest_negative = jnp.max(jnp.where(different, s, -jnp.inf), 1, keepdims=True)
    hardest_positive = jnp.min(jnp.where(same, s, jnp.inf), 1, keepdims=True)
    s_stop = jax.lax.stop_gradient(s)
    same = same & (s_stop - mining_epsilon < hardest_negative)
    different = different & (s_stop + mining_epsilon > hardest_positive)
  positive = _masked_logsumexp_plus_one(-alpha * (s - base), same) / alpha
  negative = _masked_logsumexp_plus_one(beta * (s - base), different) / beta
  return positive + negative, valid


def multi_similarity(
  *, outputs: dict, batch: dict, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5,
  mining_epsilon: float = 0.1,
):  # fmt: skip
  """Multi-Similarity loss (Wang et al. 2019) with its mining, mean over anchors.

  Args:
    outputs: `image_embedding: [B, D]`. batch: `class_id: [B]`; optional `valid`.
    alpha, beta, base: α, β, λ of the paper. mining_epsilon: ε (< 0: no mining).

  Returns:
    `(loss, {"multi_similarity"})`.
  """
  loss, used = multi_similarity_per_anchor(
    outputs["image_embedding"], batch["class_id"], batch.get("valid"), alpha=alpha, beta=beta,
    base=base, mining_epsilon=mining_epsilon,
  )  # fmt: skip
  value = _mean(loss, used)
  return value, {"multi_similarity": value}


def circle_per_anchor(embedding, class_id, valid=None, *, m=0.4, gamma=80.0):
  """`(loss [B], used [B])`: softplus(logsumexp_n γα_n(s_n − Δ_n) + logsumexp_p −γα_p(s_p − Δ_p)),
  α_p = [1 + m − s_p]_+, α_n = [s_n + m]_+ (no gradient through α), Δ_p = 1 − m, Δ_n = m."""
  b = embedding.shape[0]
  batch = {"class_id": class_id} if valid is None else {"class_id": class_id, "valid": valid}
  same, different, valid = _pairs(batch, b)
  s = _cosine_matrix(embedding)
  s_stop = jax.lax.stop_gradient(s)
  pos = -gamma * jax.nn.relu(1 + m - s_stop) * (s - (1 - m))
  neg = gamma * jax.nn.relu(s_stop + m) * (s - m)
  lse_p = jax.scipy.special.logsumexp(jnp.where(same, pos, -jnp.inf), axis=1)
  lse_n = jax.scipy.special.logsumexp(jnp.where(different, neg, -jnp.inf), axis=1)
  used = valid & same.any(1) & different.any(1)
  loss = jax.nn.softplus(jnp.where(used, lse_p + lse_n, 0.0))
  return loss, used


def circle(*, outputs: dict, batch: dict, m: float = 0.4, gamma: float = 80.0):
  """Circle loss (Sun et al. 2020), pairwise form; m = 0.4, γ = 80 (fine-grained retrieval).

  Args:
    outputs: `image_embedding: [B, D]`. batch: `class_id: [B]`; optional `valid`.
    m: relaxation margin. gamma: scale.

  Returns:
    `(loss, {"circle"})`.
  """
  loss, used = circle_per_anchor(
    outputs["image_embedding"], batch["class_id"], batch.get("valid"), m=m, gamma=gamma
  )
  value = _mean(loss, used)
  return value, {"circle": value}


def fastap_per_anchor(embedding, class_id, valid=None, *, num_bins=10):
  """`(loss [B], used [B])`: 1 − FastAP, the histogram approximation of AP over squared
  Euclidean distances of unit vectors in [0, 4] with triangular soft bins."""
  b = embedding.shape[0]
  batch = {"class_id": class_id} if valid is None else {"class_id": class_id, "valid": valid}
  same, different, valid = _pairs(batch, b)
  x = l2_normalise(embedding.astype(jnp.float32))
  d = jnp.sum(jnp.square(x[:, None, :] - x[None, :, :]), -1)  # [B, B] in [0, 4]
  delta = 4.0 / num_bins
  centres = jnp.linspace(0.0, 4.0, num_bins + 1)
  pulse = jax.nn.relu(1.0 - jnp.abs(d[..., None] - centres) / delta)  # [B, B, bins + 1]
  pos_hist = jnp.sum(pulse * same[..., None], 1)
  neg_hist = jnp.sum(pulse * different[..., None], 1)
  total = jnp.cumsum(pos_hist + neg_hist, 1)
  product = pos_hist * jnp.cumsum(pos_hist, 1)
  ap = jnp.sum(jnp.where(total > 0, product / jnp.where(total > 0, total, 1.0), 0.0), 1)
  count = jnp.sum(same, 1)
  used = valid & (count > 0)
  return 1.0 - ap / jnp.maximum(count, 1), used


def fastap(*, outputs: dict, batch: dict, num_bins: int = 10):
  """FastAP (Cakir et al. 2019): 1 − the histogram-binned AP of each anchor, mean over anchors.

  Args:
    outputs: `image_embedding: [B, D]`. batch: `class_id: [B]`; optional `valid`.
    num_bins: histogram bins over the distance range [0, 4].

  Returns:
    `(loss, {"fastap"})`.
  """
  loss, used = fastap_per_anchor(
    outputs["image_embedding"], batch["class_id"], batch.get("valid"), num_bins=int(num_bins)
  )
  value = _mean(loss, used)
  return value, {"fastap": value}
