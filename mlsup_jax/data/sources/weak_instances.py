"""Weak droplet instances as the training labels of any H&E source (thesis §3.2).

`WeakDropletLabelSource(base)` returns the base's examples with `label` replaced by the §3.1
algorithm adapted to fat droplets (`nuclei/steatosis.droplet_weak_labels`), ids renumbered
1 … n; the base's own label, when it has one, moves to `exact_label` so a study can score the
weak labels themselves. The weak labels of an example are computed once and cached (they cost
about a second per 512² tile). Put it over a phantom or over `image_folder` with your own tiles.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.segmentation import relabel_sequential

from mlsup_jax.data.sources import as_source
from mlsup_jax.data.validation import DataError
from mlsup_jax.nuclei.steatosis import droplet_weak_labels


class WeakDropletLabelSource:
  """The examples of `base` with weak droplet instances as `label` (module docstring).

  Example:
    >>> from mlsup_jax.data.sources import build_source
    >>> source = build_source({"name": "weak_droplet_labels", "droplet_radius": 8, "base": {
    ...   "name": "phantom_steatosis", "num_cases": 1, "image_size": 128, "droplet_radius": 8}})
    >>> example = source[0]
    >>> int(example["label"].max()) > 0, "exact_label" in example
    (True, True)

  Args:
    base: a source (or its config) of RGB tiles `image [H, W, 3]` in [0, 1] or 8-bit.
    droplet_radius: pixels; None = estimated per tile.
    threshold: the whiteness threshold ("otsu" or a number).
    single_solidity: components more solid than this are never split (the thesis: 0.95).
    keep: base keys kept besides `image` (the rest are dropped: training reads image + label).
  """

  def __init__(
    self,
    base,
    droplet_radius: float | None = None,
    threshold: float | str = "otsu",
    single_solidity: float = 0.95,
    keep: tuple[str, ...] = (),
  ):
    self.base = as_source(base)
    self.droplet_radius = droplet_radius
    self.threshold = threshold
    self.single_solidity = float(single_solidity)
    self.keep = tuple(keep)
    self._cache: dict[int, np.ndarray] = {}
    if hasattr(self.base, "case_ids"):
      self.case_ids = self.base.case_ids

  def __len__(self) -> int:
    return len(self.base)

  def weak_labels(self, index: int, image) -> np.ndarray:
    """`[H, W]` int32 weak instances of example `index` (cached)."""
    index = int(index)
    if index not in self._cache:
      try:
        labels = droplet_weak_labels(
          image, self.droplet_radius, self.threshold, self.single_solidity
        )
      except ValueError as error:
        raise DataError(f"example {index}: cannot make weak droplet labels: {error}") from error
      self._cache[index] = relabel_sequential(labels)[0].astype(np.int32)
    return self._cache[index]

  def __getitem__(self, index) -> dict[str, Any]:
    example = self.base[index]
    out = {"image": np.asarray(example["image"], np.float32)}
    out.update({k: example[k] for k in self.keep if k in example})
    if "label" in example:
      out["exact_label"] = np.asarray(example["label"], np.int32)
    out["label"] = self.weak_labels(index, out["image"])
    return out
