"""Host-side data layout for OTDD: input checks, class grouping, subsampling and padded clouds.

Everything the jitted parts see has a padded, bucketed shape (`padded_size`), with zero weights
on padding, so datasets whose class sizes or sample counts differ a little reuse one
compilation. Zero-weight points change no OT value (ott-jax treats them as absent).

Minimum class size (`min_count`, default 2 as in microsoft/otdd): a class with fewer samples
has no unbiased covariance, so it is DROPPED with a warning, together with its samples, from
the class statistics and from the outer problem. If no class is left, a `ValueError` says so.
microsoft/otdd selects the kept classes by position, which crashes (IndexError) when a dropped
class is not the one with the highest label; here classes are looked up by value.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np


def padded_size(n: int, minimum: int = 8) -> int:
  """`n` rounded up to the next bucket: multiples of 2^(k−3) in [2^k, 2^(k+1)).

  At most 12.5 % padding, and only 8 buckets per octave, so similar sizes share a compilation.
  """
  n = max(int(n), minimum)
  step = 2 ** max(n.bit_length() - 4, 0)
  return -(-n // step) * step


def check_dataset(features, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
  """Validates one dataset; returns `features: [N, D]` float32 and `labels: [N]`.

  Raises:
    ValueError: wrong ranks, mismatched lengths, an empty dataset, or NaN/Inf features.
  """
  features = np.asarray(features)
  labels = np.asarray(labels)
  if features.ndim != 2:
    raise ValueError(
      f"{name}: features must be [N, D] (flatten images first, e.g. "
      f"mlsup_jax.ot.features.flatten_pixels), got shape {features.shape}."
    )
  if labels.ndim != 1:
    raise ValueError(f"{name}: labels must be [N], got shape {labels.shape}.")
  if features.shape[0] != labels.shape[0]:
    raise ValueError(
      f"{name}: {features.shape[0]} feature rows but {labels.shape[0]} labels; they must match."
    )
  if features.shape[0] == 0 or features.shape[1] == 0:
    raise ValueError(f"{name}: empty dataset (features shape {features.shape}).")
  if not np.issubdtype(features.dtype, np.number) or np.iscomplexobj(features):
    raise ValueError(f"{name}: features must be real numbers, got dtype {features.dtype}.")
  features = features.astype(np.float32, copy=False)
  if not np.all(np.isfinite(features)):
    raise ValueError(f"{name}: features contain NaN or Inf.")
  return features, labels


@dataclasses.dataclass(frozen=True)
class ClassGroups:
  """The kept classes of one dataset.

  Attributes:
    values: `[C]` sorted label values of the kept classes.
    counts: `[C]` samples per kept class.
    sample_index: `[N_kept]` positions (in the input) of the samples of kept classes.
    class_index: `[N_kept]` class index (into `values`) of each kept sample.
    dropped: label value → count of every class dropped for having < `min_count` samples.
  """

  values: np.ndarray
  counts: np.ndarray
  sample_index: np.ndarray
  class_index: np.ndarray
  dropped: dict

  @property
  def num_classes(self) -> int:
    return len(self.values)


def group_classes(labels: np.ndarray, min_count: int, name: str) -> ClassGroups:
  """Groups `labels: [N]` by value and drops classes with fewer than `min_count` samples.

  Raises:
    ValueError: if no class has `min_count` samples.
  """
  if min_count < 1:
    raise ValueError(f"min_class_count must be ≥ 1, got {min_count}.")
  values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
  keep = counts >= min_count
  dropped = {v.item(): int(c) for v, c in zip(values[~keep], counts[~keep], strict=True)}
  if not keep.any():
    raise ValueError(
      f"{name}: no class has ≥ {min_count} samples (min_class_count); class counts: "
      f"{dict(zip(values.tolist(), counts.tolist(), strict=True))}."
    )
  if dropped:
    warnings.warn(
      f"{name}: dropping {len(dropped)} class(es) with < {min_count} samples "
      f"(label: count) {dropped}; their samples are left out of the distance.",
      stacklevel=3,
    )
  new_index = np.cumsum(keep) - 1  # Old class position → kept class position.
  sample_index = np.flatnonzero(keep[inverse])
  return ClassGroups(
    values=values[keep],
    counts=counts[keep],
    sample_index=sample_index,
    class_index=new_index[inverse[sample_index]].astype(np.int32),
    dropped=dropped,
  )


def subsample(n: int, max_samples: int | None, rng: np.random.Generator) -> np.ndarray:
  """Sorted indices of a uniform subsample of `min(n, max_samples)` of `range(n)`."""
  if max_samples is None or n <= max_samples:
    return np.arange(n)
  return np.sort(rng.choice(n, size=max_samples, replace=False))


def pad_points(
  points: np.ndarray, class_index: np.ndarray, size: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Pads `points: [n, D]` and `class_index: [n]` to `size` rows with uniform weights.

  Returns:
    `points: [M, D]` float32, `class_index: [M]` int32 (0 on padding), `weights: [M]` float32
    (1/n on real points, 0 on padding); M = `size` or `padded_size(n)`.
  """
  n = points.shape[0]
  size = padded_size(n) if size is None else int(size)
  if size < n:
    raise ValueError(f"sample_pad_size={size} is smaller than the {n} samples used.")
  padded = np.zeros((size, points.shape[1]), np.float32)
  padded[:n] = points
  index = np.zeros(size, np.int32)
  index[:n] = class_index
  weights = np.zeros(size, np.float32)
  weights[:n] = 1.0 / n
  return padded, index, weights


@dataclasses.dataclass(frozen=True)
class ClassClouds:
  """Every class's samples as one padded cloud, plus filler classes up to a bucketed count.

  Filler classes (index ≥ `num_classes`) hold one point at the origin with weight 1, a valid
  measure that keeps every solver finite; costs involving them are computed and discarded, so
  the class count, like the cloud size, only changes the compiled shapes at bucket boundaries.

  Attributes:
    points: `[S, M, D]` samples of class c in `points[c, :counts[c]]`, zeros after.
    weights: `[S, M]` float64, 1/counts[c] on real points, 0 on padding (float64 so that the
      float64 label costs are not limited by float32 weights; cast down where float32 is used).
    counts: `[S]` samples per class (after `max_per_class`); 1 for filler classes.
    num_classes: C ≤ S, the real classes (the first C slots).
  """

  points: np.ndarray
  weights: np.ndarray
  counts: np.ndarray
  num_classes: int


def class_clouds(
  features: np.ndarray,
  class_index: np.ndarray,
  num_classes: int,
  *,
  pad_size: int | None = None,
  max_per_class: int | None = None,
  rng: np.random.Generator | None = None,
) -> ClassClouds:
  """Splits `features: [N, D]` by `class_index: [N]` into padded per-class clouds.

  Args:
    features: `[N, D]` samples.
    class_index: `[N]` values in `[0, num_classes)`; every class must occur.
    num_classes: C; the clouds get S = `padded_size(C)` slots.
    pad_size: M, the padded cloud size; None: `padded_size` of the largest class.
    max_per_class: keep a uniform random subsample of at most this many samples per class.
    rng: draws those subsamples (required with `max_per_class`).

  Raises:
    ValueError: if `pad_size` is smaller than the largest (subsampled) class.
  """
  members = [np.flatnonzero(class_index == c) for c in range(num_classes)]
  if max_per_class is not None:
    members = [m[subsample(len(m), max_per_class, rng)] for m in members]
  largest = max(len(m) for m in members)
  size = padded_size(largest) if pad_size is None else int(pad_size)
  if size < largest:
    raise ValueError(f"class_pad_size={size} is smaller than the largest class ({largest}).")
  slots = padded_size(num_classes)
  points = np.zeros((slots, size, features.shape[1]), np.float32)
  weights = np.zeros((slots, size), np.float64)
  weights[num_classes:, 0] = 1.0  # Filler classes: one point at the origin.
  counts = np.ones(slots, np.int64)
  for c, rows in enumerate(members):
    points[c, : len(rows)] = features[rows]
    weights[c, : len(rows)] = 1.0 / len(rows)
    counts[c] = len(rows)
  return ClassClouds(points=points, weights=weights, counts=counts, num_classes=num_classes)
