"""Patch extraction with overlap and whole-image stitching (static shapes, jit-friendly).

Patch origins lie on a regular grid of step `stride`; the last patch along each axis is
aligned to the image border (as the SCU-Net authors' inference code does), so every pixel is
covered and the number of patches is a static function of the shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def patch_origins(size: int, patch: int, stride: int) -> list[int]:
  """Start offsets along one axis: `0, stride, 2·stride, …`, the last one at `size − patch`."""
  # stride > patch would leave pixels no patch covers (and stitching could not fill them).
  if not 0 < patch <= size or not 0 < stride <= patch:
    raise ValueError(
      f"Need 0 < patch ≤ size and 0 < stride ≤ patch; got size={size} patch={patch} "
      f"stride={stride}."
    )
  origins = list(range(0, size - patch + 1, stride))
  if origins[-1] != size - patch:
    origins.append(size - patch)
  return origins


def grid(shape: tuple[int, int], patch: int, stride: int) -> list[tuple[int, int]]:
  return [
    (y, x)
    for y in patch_origins(shape[0], patch, stride)
    for x in patch_origins(shape[1], patch, stride)
  ]


def extract_patches(images: jax.Array, patch: int, stride: int) -> jax.Array:
  """`images: [B, H, W, C]` → `[B, N, patch, patch, C]` in `grid` order."""
  origins = grid(images.shape[1:3], patch, stride)
  return jnp.stack([images[:, y : y + patch, x : x + patch] for y, x in origins], axis=1)


def stitch_patches(
  patches: jax.Array, shape: tuple[int, int], patch: int, stride: int, merge: str = "max"
) -> jax.Array:
  """`patches: [B, N, patch, patch, K]` → `[B, H, W, K]`, merging overlaps by `max` or `mean`."""
  origins = grid(shape, patch, stride)
  b, _, _, _, k = patches.shape
  if merge == "max":
    out = jnp.full((b, *shape, k), -jnp.inf, patches.dtype)
    for i, (y, x) in enumerate(origins):
      out = out.at[:, y : y + patch, x : x + patch].max(patches[:, i])
    return out
  if merge == "mean":
    total = jnp.zeros((b, *shape, k), patches.dtype)
    count = jnp.zeros((1, *shape, 1), patches.dtype)
    for i, (y, x) in enumerate(origins):
      total = total.at[:, y : y + patch, x : x + patch].add(patches[:, i])
      count = count.at[:, y : y + patch, x : x + patch].add(1.0)
    return total / count
  raise ValueError(f"Unknown merge rule {merge!r}: use 'max' or 'mean'.")
