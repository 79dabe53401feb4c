"""Grouping 1-D anomaly scores into ordered groups (MedShift, spec thesis_ch5_6 §2.4).

Per class, MedShift splits the external images' anomaly scores into k groups, numbered
1 (lowest scores, least anomalous) … k (highest). Two rules:

* `kmeans` — 1-D k-means, solved exactly by dynamic programming over the sorted scores
  (Wang & Song's Ckmeans.1d.dp; deterministic, no seeds or restarts; Lloyd's algorithm from
  quantile starts got stuck in local optima on well-separated clusters). Groups follow the
  score gaps, so they can be very unequal on heavy-tailed scores (the thesis's f-AnoGAN groups).
* `quantile` — equal-frequency bins at the score quantiles (the thesis's CVAD groups are almost
  exact quintiles, so this is probably what it used).

k: fixed (the thesis's 5), or chosen by the elbow rule on the k-means distortion (inertia) for
k = 1 … k_max: the k whose point on the normalised curve lies farthest below the chord from
k = 1 to k = k_max (the "kneedle" maximum-curvature rule; the thesis does not state its rule).
"""

from __future__ import annotations

import numpy as np

GROUPINGS = ("kmeans", "quantile")


def _checked(scores) -> np.ndarray:
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 1 or not len(scores):
    raise ValueError(f"scores must be a non-empty [N] array, got shape {scores.shape}.")
  if not np.all(np.isfinite(scores)):
    raise ValueError("scores hold NaN/Inf values.")
  return scores


def _dp_tables(sorted_scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Optimal 1-D k-means by dynamic programming (as Ckmeans.1d.dp), O(k·n²) time, O(k·n) memory.

  Returns:
    `(cost [k, n], start [k, n])`: cost[m, j] is the least within-cluster sum of squares of
    `sorted_scores[: j + 1]` in m + 1 clusters; start[m, j] the first index of its last cluster.
  """
  n = len(sorted_scores)
  s1 = np.concatenate([[0.0], np.cumsum(sorted_scores)])
  s2 = np.concatenate([[0.0], np.cumsum(np.square(sorted_scores))])

  def segment_cost(i, j):  # Sum of squares of x[i..j] around its mean (i: array, j: int).
    count = j - i + 1
    total = s1[j + 1] - s1[i]
    return np.maximum(s2[j + 1] - s2[i] - total * total / count, 0.0)

  cost = np.full((k, n), np.inf)
  start = np.zeros((k, n), np.int64)
  for j in range(n):
    cost[0, j] = segment_cost(np.array([0]), j)[0]
  for m in range(1, k):
    for j in range(m, n):
      first = np.arange(m, j + 1)
      values = cost[m - 1, first - 1] + segment_cost(first, j)
      best = int(np.argmin(values))
      cost[m, j], start[m, j] = values[best], first[best]
  return cost, start


def kmeans_1d(scores, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Globally optimal 1-D k-means (dynamic programming over the sorted scores; no seeds).

  Args:
    scores: `[N]` finite values.
    k: number of clusters (≥ 1); at most N are used. Tied scores may fall in different
      clusters only when there are fewer distinct values than clusters.

  Returns:
    `(assignment [N] int in [0, k'), centres [k'])`, clusters ordered by ascending centre
    (k' = min(k, N)).
  """
  scores = _checked(scores)
  if k < 1:
    raise ValueError(f"k must be ≥ 1, got {k}.")
  k = min(k, len(scores))
  order = np.argsort(scores, kind="stable")
  sorted_scores = scores[order]
  _, start = _dp_tables(sorted_scores, k)
  labels_sorted = np.zeros(len(scores), np.int64)
  end = len(scores) - 1
  for m in range(k - 1, -1, -1):
    first = start[m, end] if m else 0
    labels_sorted[first : end + 1] = m
    end = first - 1
  assignment = np.empty(len(scores), np.int64)
  assignment[order] = labels_sorted
  centres = np.array([sorted_scores[labels_sorted == m].mean() for m in range(k)])
  return assignment, centres


def inertia(scores, assignment, centres) -> float:
  """Sum of squared distances of the scores to their cluster centres (the k-means distortion)."""
  scores = _checked(scores)
  return float(np.sum(np.square(scores - np.asarray(centres)[assignment])))


def elbow_k(scores, k_max: int = 10) -> int:
  """The elbow of the k-means distortion curve over k = 1 … k_max (module docstring).

  Returns:
    k in [1, k_max]; 1 when the curve has no elbow (fewer than 3 points or a straight line).
  """
  scores = _checked(scores)
  ks = np.arange(1, min(k_max, len(np.unique(scores))) + 1)
  if len(ks) < 3:
    return int(ks[-1])
  # One DP pass gives the optimal distortion for every k ≤ k_max.
  curve = _dp_tables(np.sort(scores), int(ks[-1]))[0][:, -1]
  span = curve[0] - curve[-1]
  if span <= 0:
    return 1
  x = (ks - ks[0]) / (ks[-1] - ks[0])
  y = (curve - curve[-1]) / span  # 1 at k = 1, 0 at k_max
  # Distance below the chord y = 1 − x: largest at the knee of a convex decreasing curve.
  return int(ks[np.argmax((1.0 - x) - y)])


def quantile_groups(scores, k: int) -> np.ndarray:
  """Equal-frequency groups: `[N]` int in [0, k), by rank (ties broken by position).

  Ranks rather than quantile edges, so tied scores cannot empty a group: group sizes differ by
  at most one.
  """
  scores = _checked(scores)
  if k < 1:
    raise ValueError(f"k must be ≥ 1, got {k}.")
  ranks = np.empty(len(scores), np.int64)
  ranks[np.argsort(scores, kind="stable")] = np.arange(len(scores))
  return (ranks * k // len(scores)).astype(np.int64)


def group_scores(scores, k: int, method: str = "kmeans") -> np.ndarray:
  """Groups 1 (least anomalous) … k (most) of one class's scores.

  Args:
    scores: `[N]` anomaly scores, higher = more anomalous.
    k: number of groups.
    method: "kmeans" or "quantile".

  Returns:
    `[N]` int in [1, k]. k-means may leave fewer than k groups (fewer distinct scores); the
    groups then keep numbers 1 … k' (k' < k), so the highest numbers stay empty.
  """
  if method == "kmeans":
    assignment, _ = kmeans_1d(scores, k)
  elif method == "quantile":
    assignment = quantile_groups(scores, k)
  else:
    raise ValueError(f"grouping must be one of {GROUPINGS}, got {method!r}.")
  return assignment + 1
