"""Streaming per-class max-logit statistics for Standardized MaxLogit (SML, Jung et al. 2021).

SML standardises each pixel's max logit by the mean and std of the max logit over the training
pixels *predicted* as the same class. `SmlStatistics` accumulates those over a training pass
batch by batch (host-side numpy, float64), and `finalize` gives the `[K]` arrays that
`mlsup_jax.ood.scores.standardized_max_logit` takes.

Each batch is reduced to per-class (count, mean, sum of squared deviations) with `np.bincount`
and merged into the running totals with Chan et al.'s parallel update. That is as cheap as
summing x and x^2 but does not lose precision when the mean is large relative to the std.
"""

from __future__ import annotations

import numpy as np

STD_FLOOR = 1e-6


class SmlStatistics:
  """Per-predicted-class mean and population std (ddof=0) of max logits, accumulated in float64.

  Usage:
    stats = SmlStatistics(num_classes)
    for logits in training_batches:  # [B, H, W, K]
      stats.update(logits.max(-1), logits.argmax(-1))
    mean, std = stats.finalize()
  """

  def __init__(self, num_classes: int):
    if num_classes < 1:
      raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    self.num_classes = int(num_classes)
    self.count = np.zeros(num_classes, np.float64)  # float: the Chan update divides by it
    self.mean = np.zeros(num_classes, np.float64)
    self.m2 = np.zeros(num_classes, np.float64)  # sum of squared deviations from the mean

  def update(self, max_logit, predicted_class) -> None:
    """Adds one batch.

    Args:
      max_logit: `[*S]` finite max logit of each pixel (numpy or jax array).
      predicted_class: `[*S]` integer argmax class of each pixel, in `[0, num_classes)`.
    """
    x = np.asarray(max_logit, np.float64).reshape(-1)
    c = np.asarray(predicted_class)
    if c.shape != np.shape(max_logit):
      raise ValueError(f"predicted_class shape {c.shape} != max_logit {np.shape(max_logit)}.")
    if not np.issubdtype(c.dtype, np.integer):
      raise ValueError(f"predicted_class must be integer, got dtype {c.dtype}.")
    c = c.reshape(-1)
    if c.size == 0:
      return
    if c.min() < 0 or c.max() >= self.num_classes:
      raise ValueError(f"predicted_class has values outside [0, {self.num_classes}).")
    bad = x.size - int(np.count_nonzero(np.isfinite(x)))
    if bad:
      raise ValueError(f"max_logit contains {bad} non-finite values.")
    k = self.num_classes
    n_b = np.bincount(c, minlength=k).astype(np.float64)
    mean_b = np.bincount(c, weights=x, minlength=k) / np.maximum(n_b, 1.0)
    m2_b = np.bincount(c, weights=(x - mean_b[c]) ** 2, minlength=k)
    n = self.count + n_b
    delta = mean_b - self.mean
    safe_n = np.maximum(n, 1.0)
    self.mean = self.mean + delta * n_b / safe_n
    self.m2 = self.m2 + m2_b + delta**2 * self.count * n_b / safe_n
    self.count = n

  def finalize(self, min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean and std of the max logit.

    Classes predicted on fewer than `min_count` pixels (e.g. never) get the global mean and std
    over all pixels seen, so their scores are standardised like an average class. Every std is
    floored at `STD_FLOOR` (1e-6), so a class with one pixel or constant logits does not divide
    by zero.

    Args:
      min_count: minimum number of pixels for a class to use its own statistics.

    Returns:
      `(mean [K], std [K])` float64.
    """
    total = self.count.sum()
    if total == 0:
      raise ValueError("SmlStatistics.finalize called before any update with pixels.")
    global_mean = float(np.sum(self.count * self.mean) / total)
    global_m2 = float(np.sum(self.m2 + self.count * (self.mean - global_mean) ** 2))
    global_std = np.sqrt(global_m2 / total)
    own = self.count >= max(min_count, 1)
    mean = np.where(own, self.mean, global_mean)
    std = np.where(own, np.sqrt(self.m2 / np.maximum(self.count, 1.0)), global_std)
    return mean, np.maximum(std, STD_FLOOR)
