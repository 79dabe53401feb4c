"""Device-side warps: bilinear sampling against SciPy, thin-plate splines, ARCO's equivariance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from mlsup_jax.losses.equivariance import equivariance_kl
from mlsup_jax.nn.warps import bilinear_sample, random_tps_coords, tps_map


def test_bilinear_sample_equals_scipy_map_coordinates_with_zero_padding():
  rng = np.random.default_rng(0)
  image = rng.random((2, 9, 7, 3)).astype(np.float32)
  coords = rng.uniform(-1.5, 10.5, (2, 5, 6, 2)).astype(np.float32)
  got = np.asarray(bilinear_sample(jnp.asarray(image), jnp.asarray(coords)))
  for b in range(2):
    for c in range(3):
      # SciPy's coordinates put pixel k at k (ours at k + 0.5); zero beyond the border pixels.
      padded = np.pad(image[b, ..., c], 1)
      expected = ndimage.map_coordinates(
        padded, [coords[b, ..., 0] - 0.5 + 1, coords[b, ..., 1] - 0.5 + 1], order=1, cval=0.0
      )
      np.testing.assert_allclose(got[b, ..., c], expected, atol=1e-5)


def test_tps_interpolates_its_control_points_and_sigma_zero_is_the_identity():
  source = jnp.array([[-1.0, -1.0], [-1, 1], [1, -1], [1, 1], [0, 0]])
  target = source + 0.1 * jax.random.normal(jax.random.key(1), source.shape)
  np.testing.assert_allclose(tps_map(source, target, source), target, atol=1e-5)
  coords = random_tps_coords(jax.random.key(0), 2, 8, 6, sigma=0.0)
  rows, cols = np.mgrid[:8, :6] + 0.5
  np.testing.assert_allclose(coords[1, ..., 0], rows, atol=1e-5)
  np.testing.assert_allclose(coords[1, ..., 1], cols, atol=1e-5)
  moved = random_tps_coords(jax.random.key(0), 2, 32, 32, sigma=0.05)
  shift = np.abs(
    np.asarray(moved) - np.asarray(random_tps_coords(jax.random.key(0), 2, 32, 32, 3, 0.0))
  )
  assert 0.1 < shift.max() < 5.0  # a smooth warp of a few pixels, different per image
  assert not np.allclose(moved[0], moved[1])


def test_equivariance_kl_is_zero_for_an_equivariant_prediction_and_positive_otherwise():
  rng = np.random.default_rng(2)
  logits = jnp.asarray(rng.normal(size=(2, 8, 8, 3)) * 4, jnp.float32)
  target = jax.nn.softmax(logits, -1)
  loss, kept = equivariance_kl(logits, target, threshold=0.0)
  assert float(loss) == pytest.approx(0.0, abs=1e-5) and 0 < float(kept) < 1
  other, _ = equivariance_kl(jnp.flip(logits, 1), target, threshold=0.0)
  assert float(other) > 0.1
  # Pixels read from outside the image (all-zero targets) do not count.
  _, none = equivariance_kl(logits, jnp.zeros_like(target), threshold=0.0)
  assert float(none) == 0.0
