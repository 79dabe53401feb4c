"""Tests of mlsup_jax.data.patches: origins on a border-aligned grid, extraction, stitching."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsup_jax.data.patches import extract_patches, grid, patch_origins, stitch_patches


@pytest.mark.parametrize(
  "size, patch, stride, expected",
  [
    (10, 4, 3, [0, 3, 6]),  # 6 + 4 = 10: the grid already reaches the border.
    (11, 4, 3, [0, 3, 6, 7]),  # last patch aligned to the border.
    (8, 8, 5, [0]),  # one patch covering everything.
    (9, 4, 4, [0, 4, 5]),
    (12, 4, 4, [0, 4, 8]),  # non-overlapping tiling.
  ],
)
def test_patch_origins_exact(size, patch, stride, expected):
  origins = patch_origins(size, patch, stride)
  assert origins == expected
  # Every pixel is covered, and no patch runs past the border.
  covered = np.zeros(size, bool)
  for o in origins:
    assert 0 <= o <= size - patch
    covered[o : o + patch] = True
  if stride <= patch:
    assert covered.all()


@pytest.mark.parametrize(
  "size, patch, stride", [(4, 5, 1), (10, 4, 0), (10, 4, -2), (10, 0, 3), (10, -1, 3), (7, 2, 10)]
)
def test_patch_origins_invalid_args(size, patch, stride):
  with pytest.raises(ValueError, match=f"size={size} patch={patch} stride={stride}"):
    patch_origins(size, patch, stride)


def test_grid_is_row_major_product():
  assert grid((11, 10), 4, 3) == [(y, x) for y in (0, 3, 6, 7) for x in (0, 3, 6)]


def _image(b=2, h=11, w=10, c=3, seed=0):
  return np.random.default_rng(seed).normal(size=(b, h, w, c)).astype(np.float32)


def test_extract_patches_contents_in_grid_order():
  images = _image()
  patches = np.asarray(extract_patches(jnp.asarray(images), 4, 3))
  origins = grid((11, 10), 4, 3)
  assert patches.shape == (2, len(origins), 4, 4, 3)
  for i, (y, x) in enumerate(origins):
    np.testing.assert_array_equal(patches[:, i], images[:, y : y + 4, x : x + 4])


@pytest.mark.parametrize("merge", ["mean", "max"])
@pytest.mark.parametrize(
  "shape, patch, stride", [((11, 10), 4, 3), ((12, 12), 4, 4), ((9, 13), 5, 2)]
)
def test_extract_then_stitch_reconstructs_exactly(merge, shape, patch, stride):
  images = _image(h=shape[0], w=shape[1])
  patches = extract_patches(jnp.asarray(images), patch, stride)
  out = np.asarray(stitch_patches(patches, shape, patch, stride, merge=merge))
  assert out.shape == images.shape
  if merge == "max":
    np.testing.assert_array_equal(out, images)
  else:
    np.testing.assert_allclose(out, images, rtol=1e-6, atol=1e-6)


def test_max_merge_of_differing_overlaps_is_elementwise_max():
  # 1-D along width: size 6, patch 4, stride 2 → origins 0 and 2, overlap columns 2..3.
  shape, patch, stride = (4, 6), 4, 2
  assert grid(shape, patch, stride) == [(0, 0), (0, 2)]
  rng = np.random.default_rng(1)
  patches = rng.normal(size=(1, 2, 4, 4, 2)).astype(np.float32)
  out = np.asarray(stitch_patches(jnp.asarray(patches), shape, patch, stride, merge="max"))
  expected = np.full((1, 4, 6, 2), -np.inf, np.float32)
  expected[:, :, 0:4] = patches[:, 0]
  expected[:, :, 2:6] = np.maximum(expected[:, :, 2:6], patches[:, 1])
  np.testing.assert_array_equal(out, expected)
  np.testing.assert_array_equal(
    out[:, :, 2:4], np.maximum(patches[:, 0, :, 2:4], patches[:, 1, :, 0:2])
  )
  # Mean merge averages the same overlap instead.
  mean = np.asarray(stitch_patches(jnp.asarray(patches), shape, patch, stride, merge="mean"))
  np.testing.assert_allclose(
    mean[:, :, 2:4], (patches[:, 0, :, 2:4] + patches[:, 1, :, 0:2]) / 2, rtol=1e-6
  )
  np.testing.assert_array_equal(mean[:, :, 0:2], patches[:, 0, :, 0:2])
  np.testing.assert_array_equal(mean[:, :, 4:6], patches[:, 1, :, 2:4])


def test_unknown_merge_raises():
  patches = jnp.zeros((1, 1, 4, 4, 1))
  with pytest.raises(ValueError, match="merge"):
    stitch_patches(patches, (4, 4), 4, 4, merge="median")


def test_shapes_under_jit():
  shape, patch, stride = (16, 24), 8, 6
  n = len(patch_origins(16, 8, 6)) * len(patch_origins(24, 8, 6))

  @jax.jit
  def roundtrip(images):
    patches = extract_patches(images, patch, stride)
    # A per-patch "model" that changes channels: K = 2.
    logits = jnp.concatenate([patches[..., :1], -patches[..., :1]], axis=-1)
    return patches, stitch_patches(logits, shape, patch, stride, merge="max")

  images = _image(b=3, h=16, w=24, c=3)
  patches, out = roundtrip(jnp.asarray(images))
  assert patches.shape == (3, n, 8, 8, 3)
  assert out.shape == (3, 16, 24, 2)
  np.testing.assert_array_equal(np.asarray(out[..., 0]), images[..., 0])
  np.testing.assert_array_equal(np.asarray(out[..., 1]), -images[..., 0])
