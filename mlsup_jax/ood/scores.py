"""Per-pixel OOD scores in pure `jax.numpy` (jit-able; any leading shape; class/query axis last).

Every score follows the library convention: higher = more anomalous / more OOD. Scores reduce the
last axis, so `[..., K]` logits give `[...]` scores (e.g. `[B, H, W, K] -> [B, H, W]`).

MaxQuery (Yuan et al., CVPR 2023) scores pixels by how weakly they are assigned to any mask
query. With pixel-query affinities `A = mask_logits [..., N]` and per-query class logits
`class_logits [B, N, K]`, the four ablation variants are

- `level="query", softmax="pre"`: `-max_n A_n` (the paper's MaxQuery, best in the ablation);
- `level="query", softmax="post"`: `-max_n softmax_n(A)_n`;
- `level="category", softmax="post"`: `-max_k seg_k`, with MaskFormer semantic inference
  `seg_k = sum_n softmax_n(A)_n softmax_k(class_logits)_{n,k}` (`semantic_probabilities`);
- `level="category", softmax="pre"`: `-max_k z_k` with `z_k = logsumexp_n(A_n + log
  softmax_k(class_logits)_{n,k})` (`category_logits`). The paper does not define the
  "pre-softmax" category logits; this is our reconstruction: the log-domain counterpart of `seg`
  (`softmax_k(z) = seg`, `z` an unnormalised log of the MaskFormer mixture), which equals `A` of
  a class's query when every class has exactly one query with a one-hot class distribution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LEVELS = ("query", "category")
SOFTMAXES = ("pre", "post")


def msp(logits: jax.Array) -> jax.Array:
  """Maximum-softmax-probability score `1 - max_k softmax(logits)_k`.

  Args:
    logits: `[..., K]` class logits.

  Returns:
    `[...]` scores in `[0, 1 - 1/K]`.
  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.ood.scores import msp
    >>> msp(jnp.array([[0.0, 0.0], [10.0, -10.0]])).round(4)
    Array([0.5, 0. ], dtype=float32)
  """
  logits = jnp.asarray(logits)
  # 1 - p_max = r / (1 + r), r = sum of the other exp(l_k - l_max): no cancellation when p_max ~ 1.
  top = jnp.argmax(logits, axis=-1)
  rel = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
  is_top = jnp.arange(logits.shape[-1]) == top[..., None]  # excludes one copy of a tied max
  rest = jnp.sum(jnp.where(is_top, 0.0, rel), axis=-1)
  return rest / (1.0 + rest)


def max_logit(logits: jax.Array) -> jax.Array:
  """MaxLogit score `-max_k logits_k` (Hendrycks et al. 2022). `[..., K] -> [...]`.
  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.ood.scores import max_logit
    >>> max_logit(jnp.array([[1.0, 3.0], [0.5, 0.2]]))
    Array([-3. , -0.5], dtype=float32)
  """
  return -jnp.max(jnp.asarray(logits), axis=-1)


def energy(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
  """Energy score `-T logsumexp_k(logits_k / T)` (Liu et al. 2020). `[..., K] -> [...]`.
  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.ood.scores import energy
    >>> energy(jnp.zeros((1, 2))).round(4)  # −log 2
    Array([-0.6931], dtype=float32)
  """
  logits = jnp.asarray(logits)
  return -temperature * jax.nn.logsumexp(logits / temperature, axis=-1)


def predictive_entropy(probs: jax.Array) -> jax.Array:
  """MC-Dropout score: entropy (natural log) of the mean of T stochastic softmax passes.

  Args:
    probs: `[T, ..., K]` class probabilities of T passes with dropout active.

  Returns:
    `[...]` entropy `-sum_k p_k log p_k` of `p = mean_T probs`, in `[0, log K]` (`0 log 0 = 0`).
  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.ood.scores import predictive_entropy
    >>> passes = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # two passes that disagree
    >>> predictive_entropy(passes).round(4)  # ln 2
    Array([0.6931], dtype=float32)
  """
  mean = jnp.mean(jnp.asarray(probs), axis=0)
  return jnp.sum(jax.scipy.special.entr(mean), axis=-1)


def standardized_max_logit(logits: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """Standardized MaxLogit (SML, Jung et al. ICCV 2021), without their boundary/dilation steps.

  With `c = argmax_k logits_k`: `-(max_k logits_k - mean[c]) / std[c]`.

  Args:
    logits: `[..., K]` class logits.
    mean: `[K]` mean of the max logit over training pixels predicted as each class.
    std: `[K]` positive std of the same (see `mlsup_jax.ood.sml.SmlStatistics`).

  Returns:
    `[...]` scores.
  """
  logits = jnp.asarray(logits)
  c = jnp.argmax(logits, axis=-1)
  top = jnp.max(logits, axis=-1)
  mean, std = jnp.asarray(mean, logits.dtype), jnp.asarray(std, logits.dtype)
  return -(top - mean[c]) / std[c]


def _check_query_inputs(mask_logits: jax.Array, class_logits: jax.Array) -> None:
  """Static shape checks of `mask_logits [B, *S, N]` against `class_logits [B, N, K]`."""
  if class_logits.ndim != 3:
    raise ValueError(f"class_logits must be [B, N, K], got shape {class_logits.shape}.")
  b, n, _ = class_logits.shape
  if mask_logits.ndim < 2 or mask_logits.shape[0] != b or mask_logits.shape[-1] != n:
    raise ValueError(
      f"mask_logits shape {mask_logits.shape} must be [B, *S, N] = [{b}, ..., {n}] to match "
      f"class_logits {class_logits.shape}."
    )


def semantic_probabilities(mask_logits: jax.Array, class_logits: jax.Array) -> jax.Array:
  """MaskFormer semantic inference `seg_k = sum_n softmax_n(A)_n softmax_k(class_logits)_{n,k}`.

  Args:
    mask_logits: `[B, *S, N]` pixel-query affinity logits `A`.
    class_logits: `[B, N, K]` per-query class logits.

  Returns:
    `[B, *S, K]` class probabilities (each pixel sums to 1).
  """
  mask_logits, class_logits = jnp.asarray(mask_logits), jnp.asarray(class_logits)
  _check_query_inputs(mask_logits, class_logits)
  b, n, k = class_logits.shape
  assign = jax.nn.softmax(mask_logits, axis=-1).reshape(b, -1, n)
  seg = jnp.einsum("bpn,bnk->bpk", assign, jax.nn.softmax(class_logits, axis=-1))
  return seg.reshape(*mask_logits.shape[:-1], k)


def category_logits(mask_logits: jax.Array, class_logits: jax.Array) -> jax.Array:
  """Pre-softmax category logits `z_k = logsumexp_n(A_n + log softmax_k(class_logits)_{n,k})`.

  Computed as `logsumexp_n(A) + log(seg_k)` (an exact identity), which avoids a `[B, *S, N, K]`
  intermediate; a class whose `seg_k` underflows gets `-inf`, i.e. probability 0.
  `softmax_k(z) == semantic_probabilities(...)`.

  Args:
    mask_logits: `[B, *S, N]` pixel-query affinity logits `A`.
    class_logits: `[B, N, K]` per-query class logits.

  Returns:
    `[B, *S, K]` logits.
  """
  seg = semantic_probabilities(mask_logits, class_logits)
  return jax.nn.logsumexp(jnp.asarray(mask_logits), axis=-1, keepdims=True) + jnp.log(seg)


def maxquery(
  mask_logits: jax.Array,
  class_logits: jax.Array | None = None,
  level: str = "query",
  softmax: str = "pre",
) -> jax.Array:
  """MaxQuery OOD score (Yuan et al. CVPR 2023) and its ablation variants (module docstring).

  `level` and `softmax` are Python strings: mark them static under `jax.jit`.

  Args:
    mask_logits: `[B, *S, N]` pixel-query affinity logits (N queries on the last axis); for the
      query level any `[..., N]` shape works.
    class_logits: `[B, N, K]` per-query class logits; needed only for `level="category"`.
    level: `"query"` (max over queries) or `"category"` (max over semantic classes).
    softmax: `"pre"` (scores on logits) or `"post"` (scores on probabilities).

  Returns:
    `[B, *S]` scores, higher = more OOD.
  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.ood.scores import maxquery
    >>> mask_logits = jnp.array([[[[4.0, 0.0]], [[0.5, 0.4]]]])  # [B=1, 2, 1, N=2]
    >>> class_logits = jnp.zeros((1, 2, 3))
    >>> maxquery(mask_logits, class_logits)  # −max_n A: the weakly assigned pixel is more OOD
    Array([[[-4. ],
            [-0.5]]], dtype=float32)
  """
  if level not in LEVELS:
    raise ValueError(f"level must be one of {LEVELS}, got {level!r}.")
  if softmax not in SOFTMAXES:
    raise ValueError(f"softmax must be one of {SOFTMAXES}, got {softmax!r}.")
  mask_logits = jnp.asarray(mask_logits)
  if level == "query":
    if softmax == "pre":
      return -jnp.max(mask_logits, axis=-1)
    return -jnp.max(jax.nn.softmax(mask_logits, axis=-1), axis=-1)
  if class_logits is None:
    raise ValueError("maxquery with level='category' needs class_logits [B, N, K].")
  if softmax == "post":
    return -jnp.max(semantic_probabilities(mask_logits, class_logits), axis=-1)
  # max_k z_k = logsumexp_n(A) + log max_k seg_k; max_k seg_k >= 1/K, so the log is safe.
  seg = semantic_probabilities(mask_logits, class_logits)
  return -(jax.nn.logsumexp(mask_logits, axis=-1) + jnp.log(jnp.max(seg, axis=-1)))


# Scores that need only `[..., K]` class logits: name -> fn(logits) -> [...] score.
PIXEL_SCORES = {
  "msp": msp,
  "max_logit": max_logit,
  "energy": energy,
}
