"""Regional pixel contrast with actively sampled hard negatives (ReCo, as ACTION and ARCO use it).

For every class `c` present in the batch: the positive key is the class prototype (the mean
embedding of the pixels labelled `c`, no gradient); the queries are *hard* pixels of class `c`
(probability of `c` below `strong_threshold`), drawn by `pixel_sampling.sample_pixels`
(uniform, or ARCO's stratified / antithetic draws); each query's negatives are pixels of the
other classes, drawn **actively**: a negative's class is drawn from `softmax(cos(p_c, p_j) / T)`
over the other present classes `j` (classes whose prototype resembles `c`'s give more
negatives), then a pixel of that class uniformly. A query's loss is InfoNCE with the positive
first, `−log softmax([cos(q, p_c), cos(q, n_1), …] / T)_0`; a class's loss is the weighted mean
of its queries' (the sampler's unbiased weights), and the loss is the mean over the classes that
have hard queries (Liu et al. 2022; ACTION / ARCO use `T = 0.5`, 256 queries, 512 negatives,
`strong_threshold = 0.97`).

Fixed shapes: `[K, Q]` queries and `[K, Q, N]` negatives whatever the batch holds; absent
classes weigh 0. A class's queries are drawn from the candidates of the whole batch (stratified
sampling groups the same region of every image).

`regional_contrast_term` is the same loss as a `LOSSES` term: the method hands it the embedding,
the labels and probabilities it contrasts, the valid pixels and a PRNG key as outputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlsup_jax.losses.embeddings import l2_normalise
from mlsup_jax.losses.pixel_sampling import sample_pixels


def regional_contrast(
  embedding: jax.Array,
  labels: jax.Array,
  probs: jax.Array,
  valid: jax.Array,
  key: jax.Array,
  *,
  num_queries: int = 256,
  num_negatives: int = 512,
  temperature: float = 0.5,
  strong_threshold: float = 0.97,
  sampling: str = "uniform",
  grid: int = 4,
  antithetic: bool = False,
) -> tuple[jax.Array, dict]:
  """The regional contrastive loss (module docstring).

  Args:
    embedding: `[B, *S, D]` pixel embeddings (normalised here).
    labels: `[B, *S]` int class of every pixel (ground truth or pseudo-labels).
    probs: `[B, *S, K]` class probabilities (hard queries: `probs[c] < strong_threshold`).
    valid: `[B, *S]` bool, pixels that take part (e.g. confident pseudo-labels).
    key: PRNG key for the draws.
    num_queries, num_negatives: draws per class and negatives per query.
    temperature: T of the InfoNCE logits and of the negative-class distribution.
    strong_threshold: queries are pixels predicted less confidently than this.
    sampling, grid, antithetic: how queries are drawn (`pixel_sampling.sample_pixels`).

  Returns:
    `(loss, {"contrast_classes": classes with queries})`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from mlsup_jax.losses.pixel_contrast import regional_contrast
    >>> labels = jnp.zeros((2, 8, 8), jnp.int32).at[:, :, 4:].set(1)
    >>> emb = jax.nn.one_hot(labels, 2) + 0.1  # each class its own direction
    >>> probs = jnp.full((2, 8, 8, 2), 0.5)
    >>> loss, m = regional_contrast(emb, labels, probs, jnp.ones((2, 8, 8), bool),
    ...                             jax.random.key(0), num_queries=8, num_negatives=4)
    >>> # cos(class 0, class 1) = 0.22 / 1.22: loss = log(1 + 4 e^((0.18 − 1) / 0.5))
    >>> round(float(loss), 3), int(m["contrast_classes"])
    (0.575, 2)
  """
  num_classes = probs.shape[-1]
  flat_emb = l2_normalise(embedding.astype(jnp.float32)).reshape(-1, embedding.shape[-1])
  classes = jnp.arange(num_classes).reshape((-1,) + (1,) * labels.ndim)
  members = (labels[None] == classes) & valid[None]  # [K, B, *S]
  counts = jnp.sum(members.reshape(num_classes, -1), axis=1)
  present = counts > 0
  sums = members.reshape(num_classes, -1).astype(jnp.float32) @ flat_emb
  prototypes = jax.lax.stop_gradient(l2_normalise(sums / jnp.maximum(counts, 1)[:, None]))

  hard = members & (jnp.moveaxis(probs, -1, 0) < strong_threshold)  # [K, B, *S]
  query_key, class_key, pixel_key = jax.random.split(key, 3)
  q_index, q_weight = jax.vmap(
    lambda k, c: sample_pixels(k, c, num_queries, sampling, grid, antithetic, batch_dims=1)
  )(jax.random.split(query_key, num_classes), hard)  # [K, Q]
  queries = flat_emb[q_index]  # [K, Q, D]

  # A pool of `num_negatives` pixels of every class (uniform over the batch, with replacement,
  # no gradient). Drawn by index (`sample_pixels`), not `jax.random.categorical` over all
  # pixels: that makes K · N · pixels Gumbel numbers (56 M at the default size: ~2 s a step
  # on a CPU, 20× Mean Teacher's whole step). Absent classes give arbitrary pixels that are
  # never drawn as negatives below.
  pool_key, slot_key = jax.random.split(pixel_key)
  pool, _ = jax.vmap(lambda k, m: sample_pixels(k, m, num_negatives, "uniform", batch_dims=1))(
    jax.random.split(pool_key, num_classes), members
  )  # [K, N]
  pool_emb = jax.lax.stop_gradient(flat_emb[pool])  # [K, N, D]

  similarity = prototypes @ prototypes.T / temperature  # [K, K]
  other = present[None, :] & ~jnp.eye(num_classes, dtype=bool)
  class_logits = jnp.where(other, similarity, -jnp.inf)
  has_negatives = jnp.any(other, axis=1)
  class_logits = jnp.where(has_negatives[:, None], class_logits, 0.0)
  class_keys = jax.random.split(class_key, num_classes)
  neg_class = jax.vmap(
    lambda k, logits: jax.random.categorical(k, logits, shape=(num_queries, num_negatives))
  )(class_keys, class_logits)  # [K, Q, N]
  slot = jax.random.randint(slot_key, neg_class.shape, 0, num_negatives)
  # Similarities to the whole pool first, then the drawn ones: never a [K, Q, N, D] gather.
  to_pool = jnp.einsum("kqd,jnd->kqjn", queries, pool_emb)  # [K, Q, K, N]
  k_index = jnp.arange(num_classes)[:, None, None]
  q_index = jnp.arange(num_queries)[None, :, None]
  negative = to_pool[k_index, q_index, neg_class, slot]  # [K, Q, N]

  positive = jnp.einsum("kqd,kd->kq", queries, prototypes)
  logits = jnp.concatenate([positive[..., None], negative], axis=-1) / temperature
  per_query = jax.nn.logsumexp(logits, axis=-1) - logits[..., 0]  # stable: no exp overflow
  per_class = jnp.sum(q_weight * per_query, axis=1)
  active = present & has_negatives & (jnp.sum(q_weight, axis=1) > 0)
  num_active = jnp.sum(active)
  loss = jnp.sum(jnp.where(active, per_class, 0.0)) / jnp.maximum(num_active, 1)
  return loss, {"contrast_classes": num_active.astype(jnp.float32)}


def regional_contrast_term(
  *,
  outputs: dict,
  batch: dict,
  num_queries: int = 256,
  num_negatives: int = 512,
  temperature: float = 0.5,
  strong_threshold: float = 0.97,
  sampling: str = "uniform",
  grid: int = 4,
  antithetic: bool = False,
):
  """`regional_contrast` as a loss term (defaults: ReCo / ACTION / ARCO).

  Args:
    outputs: `embedding [B, *S, D]`, `contrast_labels [B, *S]`, `contrast_probs [B, *S, K]`,
      `contrast_valid [B, *S]`, `contrast_key` (a PRNG key); optionally `contrast_temperature`
      (a scheduled τ, e.g. ACTION++'s cosine schedule) in place of `temperature`.
    batch: unused (the method builds what is contrasted).

  Returns:
    `(loss, {"regional_contrast": loss, "contrast_classes": classes with queries})`.
  """
  del batch
  loss, metrics = regional_contrast(
    outputs["embedding"],
    outputs["contrast_labels"],
    jax.lax.stop_gradient(outputs["contrast_probs"]),
    outputs["contrast_valid"],
    outputs["contrast_key"],
    num_queries=num_queries,
    num_negatives=num_negatives,
    temperature=outputs.get("contrast_temperature", temperature),
    strong_threshold=strong_threshold,
    sampling=sampling,
    grid=grid,
    antithetic=antithetic,
  )
  return loss, {"regional_contrast": loss, **metrics}
