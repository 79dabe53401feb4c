"""The nuclear channel, its foreground and the nucleus size (thesis §3.1, step 0).

The thesis thresholds with "a global adaptive threshold" — Otsu's, our default — and the
author's MATLAB code at a fixed 0.25 (`im2bw`; `threshold=0.25`); the channel is first smoothed
with a 1-pixel Gaussian so that shot noise does not break the mask into specks. Holes are filled
and components smaller than a tenth of the typical nucleus area dropped; a component is a
*clump* when its area is at least 1.5 × the mean single-nucleus area. Every pixel length and area
of the later steps scales with the nucleus size, estimated here from the image (the median area
of the foreground components: most components are single nuclei) unless it is given, so the
pipeline works at any magnification.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from skimage import filters

__all__ = ["NucleusSize", "foreground_mask", "nuclear_channel", "nucleus_size"]


def nuclear_channel(image, channel: int | None = 2) -> np.ndarray:
  """`[H, W]` float in [0, 1]: the nuclear channel of an image.

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.nuclei.foreground import nuclear_channel
    >>> rgb = np.zeros((4, 4, 3), np.uint16); rgb[..., 2] = 65535
    >>> float(nuclear_channel(rgb).max())
    1.0

  Args:
    image: `[H, W]` grey or `[H, W, C]`; integers are scaled by their type's maximum (8- and
      16-bit files), floats are taken as they are (expected in [0, 1]).
    channel: which channel holds the nuclear stain for `[H, W, C]` (default 2: blue, DAPI);
      ignored for grey images.

  Raises:
    ValueError: not a 2-D image, a channel out of range, or float values outside [0, 1].
  """
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim == 3:
    if channel is None or not -image.shape[-1] <= channel < image.shape[-1]:
      raise ValueError(f"channel={channel} is not one of the image's {image.shape[-1]} channels.")
    image = image[..., channel]
  if image.ndim != 2:
    raise ValueError(f"Expected an [H, W] or [H, W, C] image, got shape {image.shape}.")
  if image.dtype.kind in "ub":
    return image.astype(np.float32) / float(
      np.iinfo(image.dtype).max if image.dtype.kind == "u" else 1
    )
  if image.dtype.kind == "i":
    return np.clip(image.astype(np.float32) / float(np.iinfo(image.dtype).max), 0.0, 1.0)
  image = image.astype(np.float32)
  if image.size and (image.min() < -1e-6 or image.max() > 1 + 1e-6):
    raise ValueError(
      f"A float image must lie in [0, 1], got [{image.min():.3g}, {image.max():.3g}]; scale it."
    )
  return image


def foreground_mask(
  channel_image: np.ndarray, threshold: float | str = "otsu", smoothing: float = 1.0
) -> np.ndarray:
  """`[H, W]` bool: above `threshold` (a number, or "otsu"), holes filled, specks dropped.

  Components smaller than a tenth of the median component area are removed (the code's "mean
  area / 10", with the median so a few clumps do not inflate it). An image without contrast has
  no foreground.
  """
  channel_image = ndimage.gaussian_filter(np.asarray(channel_image, np.float32), smoothing)
  if threshold == "otsu":
    if np.ptp(channel_image) < 1e-6:
      return np.zeros(channel_image.shape, bool)
    threshold = float(filters.threshold_otsu(channel_image))
  mask = ndimage.binary_fill_holes(channel_image > float(threshold))
  labels, count = ndimage.label(mask)
  if count == 0:
    return mask
  areas = np.bincount(labels.ravel())[1:]
  keep = np.concatenate([[False], areas >= np.median(areas) / 10])
  return keep[labels]


@dataclasses.dataclass(frozen=True)
class NucleusSize:
  """The single-nucleus scale every length and area of the pipeline follows.

  Attributes:
    area: mean single-nucleus area in pixels.
  """

  area: float

  @property
  def radius(self) -> float:
    return float(np.sqrt(self.area / np.pi))


def nucleus_size(mask: np.ndarray, radius: float | None = None) -> NucleusSize:
  """The nucleus size: from `radius` when given, else the median foreground component area.

  Raises:
    ValueError: no foreground and no `radius` (nothing to estimate from).
  """
  if radius is not None:
    if radius <= 0:
      raise ValueError(f"nucleus radius must be > 0, got {radius}.")
    return NucleusSize(float(np.pi * radius**2))
  labels, count = ndimage.label(mask)
  if count == 0:
    raise ValueError("No foreground to estimate the nucleus size from; pass the radius.")
  return NucleusSize(float(np.median(np.bincount(labels.ravel())[1:])))
