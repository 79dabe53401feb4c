"""Intra- and inter-class variance of pixel features (LTUDA's Table 9, seed 002).

The paper reports that its alignment makes features of one class tighter and classes further
apart, without defining the numbers. Ours, on L2-normalised pixel embeddings `f` grouped by the
reference label (every class present, background included):

* intra-class variance `(1/K) Σ_k (1/N_k) Σ_{i ∈ k} ‖f_i − μ_k‖²` — the mean squared distance of a
  pixel to its class mean, averaged over the classes (each class counts once, however large);
* inter-class variance `(1/K) Σ_k ‖μ_k − μ̄‖²` with `μ̄ = (1/K) Σ_k μ_k` — the spread of the class
  means around their (unweighted) centre.

Lower intra and higher inter are "better"; their ratio `intra / inter` is reported too. Both are
computed from per-image sufficient statistics (`class_statistics`: per class the sum of `f`,
the sum of `‖f‖²` and the count), so evaluation never holds all pixel features at once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["class_statistics", "feature_variance"]


def class_statistics(features: jax.Array, label: jax.Array, num_classes: int) -> dict:
  """Per image and class: `feature_sum [B, K, D]`, `square_sum [B, K]`, `count [B, K]`.

  Args:
    features: `[B, *S, D]` pixel features.
    label: `[B, *S]` int classes in 0 … K − 1 (others are ignored).
    num_classes: K.
  """
  onehot = jax.nn.one_hot(label, num_classes, dtype=jnp.float32)  # [B, *S, K]
  batch = features.shape[0]
  onehot = onehot.reshape(batch, -1, num_classes)
  flat = features.astype(jnp.float32).reshape(batch, -1, features.shape[-1])
  return {
    "feature_sum": jnp.einsum("bpk,bpd->bkd", onehot, flat),
    "square_sum": jnp.einsum("bpk,bp->bk", onehot, jnp.sum(flat * flat, axis=-1)),
    "count": jnp.sum(onehot, axis=1),
  }


def feature_variance(feature_sum, square_sum, count) -> dict[str, float]:
  """Intra / inter-class variance from the summed statistics of all images (module docstring).

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.feature_variance import feature_variance
    >>> # class 0: features (1, 0) and (0, 1); class 1: (−1, 0) twice
    >>> sums = np.array([[[1.0, 1.0], [-2.0, 0.0]]]); squares = np.array([[2.0, 2.0]])
    >>> r = feature_variance(sums, squares, np.array([[2.0, 2.0]]))
    >>> r["intra_class_variance"], r["inter_class_variance"]
    (0.25, 0.625)

  Args:
    feature_sum: `[..., K, D]`, summed over every leading axis (images).
    square_sum: `[..., K]`.
    count: `[..., K]`.

  Returns:
    `intra_class_variance`, `inter_class_variance`, `variance_ratio` (NaN with < 2 classes).
  """
  total = np.asarray(feature_sum, np.float64)
  total = total.reshape(-1, *total.shape[-2:]).sum(0)
  squares = np.asarray(square_sum, np.float64).reshape(-1, total.shape[0]).sum(0)
  counts = np.asarray(count, np.float64).reshape(-1, total.shape[0]).sum(0)
  present = counts > 0
  if present.sum() < 2:
    nan = float("nan")
    return {"intra_class_variance": nan, "inter_class_variance": nan, "variance_ratio": nan}
  means = total[present] / counts[present, None]
  intra = squares[present] / counts[present] - np.sum(means * means, axis=-1)
  centre = means.mean(0)
  inter = np.mean(np.sum((means - centre) ** 2, axis=-1))
  intra = float(np.mean(np.maximum(intra, 0.0)))
  return {
    "intra_class_variance": intra,
    "inter_class_variance": float(inter),
    "variance_ratio": intra / float(inter) if inter > 0 else float("inf"),
  }
