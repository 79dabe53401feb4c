"""Weak instance labels of fat droplets in H&E tiles: the §3.1 algorithm adapted (thesis §3.2).

`droplet_weak_labels(image)`:

1. **whiteness** = the smallest of the R, G, B values (fat and glass are white in every channel;
   eosin, haematoxylin and the pale sinusoids are not), smoothed; white = above the Otsu
   threshold of the tile (the thesis's "normalized threshold", a number can be given);
2. **tissue mask**: the non-white pixels closed over a few pixels and hole-filled — white
   regions enclosed by tissue (droplets) are inside it, the glass around the tissue is not;
   candidates = white ∩ tissue, specks below a tenth of the median candidate area dropped;
3. components more solid than `single_solidity` (0.95, the thesis's rule) are single droplets;
   the others are clumps split by §3.1's algorithm (`clump_splitting.split_mask`: curvature
   voting, ellipse-quality search, dividing curves), with every radius and area scaled by the
   droplet size (estimated from the tile, or `droplet_radius`).

The thesis then had an expert remove implausible partitions (left unlabelled); nothing here
does that, so the weak labels are the algorithm's raw output.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import filters, morphology

from mlsup_jax.nuclei.clump_splitting import SplitSettings, split_mask
from mlsup_jax.nuclei.foreground import nucleus_size

__all__ = ["droplet_weak_labels", "tissue_and_white"]


def tissue_and_white(
  image: np.ndarray, threshold: float | str = "otsu", closing: int = 3
) -> tuple[np.ndarray, np.ndarray]:
  """`(tissue [H, W] bool, white [H, W] bool)` of an RGB tile in [0, 1] (steps 1–2)."""
  image = np.asarray(image, np.float32)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"an H&E tile must be [H, W, 3] RGB, got shape {image.shape}.")
  if image.max() > 1.0 + 1e-6:
    image = image / 255.0
  whiteness = ndimage.gaussian_filter(image.min(axis=-1), 1.0)
  if threshold == "otsu":
    if np.ptp(whiteness) < 1e-6:
      return np.zeros(whiteness.shape, bool), np.zeros(whiteness.shape, bool)
    threshold = float(filters.threshold_otsu(whiteness))
  white = whiteness > float(threshold)
  tissue = ndimage.binary_fill_holes(
    ndimage.binary_closing(~white, morphology.disk(closing), border_value=1)
  )
  return tissue, white


def droplet_weak_labels(
  image: np.ndarray,
  droplet_radius: float | None = None,
  threshold: float | str = "otsu",
  single_solidity: float = 0.95,
  settings: SplitSettings | None = None,
) -> np.ndarray:
  """`[H, W]` int32 weak droplet instances of an H&E tile (module docstring).

  Example:
    >>> from mlsup_jax.data.phantoms.steatosis import SteatosisPhantomSource
    >>> from mlsup_jax.nuclei.steatosis import droplet_weak_labels
    >>> case = SteatosisPhantomSource(num_cases=1, image_size=128, droplet_radius=8)[0]
    >>> labels = droplet_weak_labels(case["image"], droplet_radius=8)
    >>> labels.shape, int(labels.max()) > 0
    ((128, 128), True)

  Args:
    image: `[H, W, 3]` RGB, float in [0, 1] or 8-bit.
    droplet_radius: pixels; None = estimated from the candidates (median area).
    threshold: the whiteness threshold ("otsu" or a number in [0, 1]).
    single_solidity: components more solid than this are never split.
    settings: §3.1's constants (`SplitSettings`).

  Returns:
    Instance labels, 0 = no droplet; a tile without white inside tissue gives all zeros.
  """
  tissue, white = tissue_and_white(image, threshold)
  candidates = white & tissue
  labels, count = ndimage.label(candidates)
  if count == 0:
    return np.zeros(candidates.shape, np.int32)
  areas = np.bincount(labels.ravel())[1:]
  candidates = np.concatenate([[False], areas >= np.median(areas) / 10])[labels]
  size = nucleus_size(candidates, droplet_radius)
  whiteness = np.asarray(image, np.float32).min(axis=-1)
  return split_mask(candidates, whiteness, size, settings or SplitSettings(), single_solidity)
