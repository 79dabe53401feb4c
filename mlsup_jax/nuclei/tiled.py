"""Tile-wise instance segmentation of a large image with bounded memory (thesis §3.2, Fig. 3.4).

A whole-slide image does not fit in memory, nor does one pass of a model over it. `tiled_instances`
reads one window at a time (a tile plus an overlap margin) from any array-like that slices lazily
(`numpy.memmap`, `tifffile.memmap`, zarr), runs `predict` on it, and keeps the instances whose
centroid lies in the tile's **core** — the part of the window no other tile's core covers — so
an instance cut by one window's border is kept whole from the window that sees it centred
(the overlap must exceed the largest instance's diameter). Kept instances are written into
`out` (an `[H, W]` integer array, e.g. a memmap on disk) under global ids, with their
properties (area, perimeter, eccentricity, centroid, box) collected on the way. At most one
window and its labels are in memory at a time.

`droplet_filter(properties)` applies the thesis's post-processing: keep the instances whose
size, perimeter and eccentricity lie within [0.001, 6], [0.5, 4] and [0.2, 1.5] × those of the
average droplet (L1495–1500); `relabel(out, keep)` then drops the others tile by tile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np
from skimage import measure

__all__ = ["DropletFilter", "droplet_filter", "relabel", "tile_windows", "tiled_instances"]


@dataclasses.dataclass(frozen=True)
class DropletFilter:
  """Ranges relative to the average instance (the thesis's example values)."""

  size: tuple[float, float] = (0.001, 6.0)
  perimeter: tuple[float, float] = (0.5, 4.0)
  eccentricity: tuple[float, float] = (0.2, 1.5)


def tile_windows(
  shape: tuple[int, int], tile: int, overlap: int
) -> Iterator[tuple[tuple[slice, slice], tuple[slice, slice]]]:
  """`(window, core)` slice pairs covering an `[H, W]` image: cores tile it exactly once; each
  window is its core grown by `overlap` (clipped at the image border)."""
  if tile < 1 or overlap < 0:
    raise ValueError(f"tile must be ≥ 1 and overlap ≥ 0, got {tile}, {overlap}.")
  height, width = shape
  for r in range(0, height, tile):
    for c in range(0, width, tile):
      core = (slice(r, min(r + tile, height)), slice(c, min(c + tile, width)))
      window = (
        slice(max(r - overlap, 0), min(r + tile + overlap, height)),
        slice(max(c - overlap, 0), min(c + tile + overlap, width)),
      )
      yield window, core


def tiled_instances(
  image,
  predict: Callable[[np.ndarray], np.ndarray],
  out: np.ndarray,
  tile: int = 512,
  overlap: int = 64,
  progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
  """Runs `predict` window by window and writes the kept instances into `out`.

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.nuclei.tiled import tiled_instances
    >>> from scipy import ndimage
    >>> image = np.zeros((100, 100), np.float32); image[10:20, 45:55] = 1; image[70:80, 70:80] = 1
    >>> out = np.zeros((100, 100), np.int32)
    >>> props = tiled_instances(image, lambda w: ndimage.label(w > 0.5)[0], out, tile=50,
    ...                         overlap=16)
    >>> len(props), int(out.max())
    (2, 2)

  Args:
    image: `[H, W, ...]` array-like that slices lazily.
    predict: window `[h, w, ...]` → `[h, w]` int instance ids (0 = none).
    out: `[H, W]` integer array (zeros) for the global instance ids.
    tile: core side in pixels. overlap: margin in pixels (> the largest instance's diameter).
    progress: optional `(done, total)` callback after each window.

  Returns:
    One dict per kept instance: `id`, `area`, `perimeter`, `eccentricity`, `centroid`
    (global `(row, col)`), `bbox` (global `(r0, c0, r1, c1)`).
  """
  shape = tuple(out.shape)
  if tuple(image.shape[:2]) != shape:
    raise ValueError(f"out is {shape} but the image is {tuple(image.shape[:2])}.")
  windows = list(tile_windows(shape, tile, overlap))
  properties: list[dict] = []
  next_id = 1
  for done, (window, core) in enumerate(windows, start=1):
    pixels = np.asarray(image[window])  # the one window in memory
    labels = np.asarray(predict(pixels))
    if labels.shape != pixels.shape[:2]:
      raise ValueError(f"predict returned {labels.shape} for a window of {pixels.shape[:2]}.")
    r0, c0 = window[0].start, window[1].start
    for region in measure.regionprops(labels.astype(np.int32)):
      cy, cx = region.centroid
      gy, gx = cy + r0, cx + c0
      if not (core[0].start <= gy < core[0].stop and core[1].start <= gx < core[1].stop):
        continue  # another window owns it
      br0, bc0, br1, bc1 = region.bbox
      box = (slice(r0 + br0, r0 + br1), slice(c0 + bc0, c0 + bc1))
      target = np.array(out[box])  # read-modify-write: works for memmaps and zarr alike
      target[region.image & (target == 0)] = next_id
      out[box] = target
      properties.append(
        {
          "id": next_id,
          "area": float(region.area),
          "perimeter": float(region.perimeter),
          "eccentricity": float(region.eccentricity),
          "centroid": (float(gy), float(gx)),
          "bbox": (r0 + br0, c0 + bc0, r0 + br1, c0 + bc1),
        }
      )
      next_id += 1
    if progress is not None:
      progress(done, len(windows))
  return properties


def droplet_filter(properties: list[dict], ranges: DropletFilter | None = None) -> set[int]:
  """The ids of the instances within `ranges` × the average instance (module docstring)."""
  ranges = ranges or DropletFilter()
  if not properties:
    return set()
  keep = set()
  averages = {
    key: float(np.mean([p[key] for p in properties]))
    for key in ("area", "perimeter", "eccentricity")
  }
  bounds = {"area": ranges.size, "perimeter": ranges.perimeter, "eccentricity": ranges.eccentricity}
  for p in properties:
    inside = True
    for key, (low, high) in bounds.items():
      mean = averages[key]
      # A quantity whose average is 0 (e.g. every droplet a perfect circle: eccentricity 0)
      # cannot be judged relative to it: the check passes.
      if mean > 0 and not low * mean <= p[key] <= high * mean:
        inside = False
    if inside:
      keep.add(p["id"])
  return keep


def relabel(out: np.ndarray, keep: set[int], tile: int = 2048) -> int:
  """Zeroes the ids of `out` not in `keep` and renumbers the kept ones 1 … n, block by block.

  Returns:
    n, the number of kept instances.
  """
  kept = sorted(keep)
  lookup_size = int(max(kept, default=0)) + 1
  for window, _ in tile_windows(tuple(out.shape), tile, 0):
    block = np.asarray(out[window])
    table = np.zeros(max(lookup_size, int(block.max()) + 1), out.dtype)
    table[kept] = np.arange(1, len(kept) + 1, dtype=out.dtype)
    out[window] = table[block]
  return len(kept)
