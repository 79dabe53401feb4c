"""Largest-connected-component post-processing per class (LTUDA's evaluation default).

Keeps, for each class, only its `n` largest connected components in each case (full
connectivity: 8-neighbour in 2-D, 26 in 3-D); the removed pixels become background. LTUDA's
evaluation keeps 1 for liver, spleen and pancreas and 2 for the kidneys.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

__all__ = ["keep_largest_components"]


def keep_largest_components(pred: np.ndarray, keep: Mapping[int, int]) -> np.ndarray:
  """`pred [*S]` with each class `c` of `keep` cut to its `keep[c]` largest components.

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.largest_components import keep_largest_components
    >>> pred = np.zeros((6, 6), int); pred[0:3, 0:3] = 1; pred[5, 5] = 1; pred[4, 0] = 2
    >>> out = keep_largest_components(pred, {1: 1, 2: 1})
    >>> int(out[5, 5]), int((out == 1).sum()), int(out[4, 0])
    (0, 9, 2)

  Args:
    pred: one case's integer label map.
    keep: class → number of components to keep (≤ 0: the class is left as it is).
  """
  pred = np.asarray(pred)
  out = pred.copy()
  structure = np.ones((3,) * pred.ndim, bool)
  for cls, count in keep.items():
    if count <= 0:
      continue
    components, num = ndimage.label(pred == cls, structure=structure)
    if num <= count:
      continue
    sizes = np.bincount(components.ravel())[1:]
    kept = np.argsort(sizes)[::-1][:count] + 1
    out[(components > 0) & ~np.isin(components, kept)] = 0
  return out
