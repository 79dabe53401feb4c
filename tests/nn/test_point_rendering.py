"""`point_sample` equals PyTorch `grid_sample(align_corners=False)`; point selection rules."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsup_jax.nn import point_rendering as pr


def naive_sample(features, coords, mode="bilinear"):
  """A loop-per-point reference: `features [B, *S, C]`, `coords [B, P, d]` → `[B, P, C]`."""
  features, coords = np.asarray(features, np.float64), np.asarray(coords, np.float64)
  batch, spatial, channels = features.shape[0], features.shape[1:-1], features.shape[-1]
  out = np.zeros((batch, coords.shape[1], channels))
  for b in range(batch):
    for p in range(coords.shape[1]):
      position = coords[b, p] * np.array(spatial) - 0.5
      if mode == "nearest":
        index = np.rint(position).astype(int)
        if all(0 <= i < s for i, s in zip(index, spatial, strict=True)):
          out[b, p] = features[(b, *index)]
        continue
      low = np.floor(position).astype(int)
      for corner in itertools.product((0, 1), repeat=len(spatial)):
        index = low + np.array(corner)
        if not all(0 <= i < s for i, s in zip(index, spatial, strict=True)):
          continue
        weight = np.prod([f if c else 1 - f for c, f in zip(corner, position - low, strict=True)])
        out[b, p] += weight * features[(b, *index)]
  return out


def test_hand_computed_cases():
  image = jnp.array([[0.0, 1.0], [2.0, 3.0]])[None, :, :, None]
  coords = jnp.array([[[0.5, 0.5], [0.25, 0.25], [0.25, 0.5], [0.0, 0.0], [1.0, 0.75]]])
  # centre; pixel (0,0); between (0,0) and (0,1); corner: 1/4 of pixel (0,0) (zero padding);
  # bottom edge at column 1: half of pixel (1,1).
  expected = [1.5, 0.0, 0.5, 0.0, 1.5]
  np.testing.assert_allclose(pr.point_sample(image, coords)[0, :, 0], expected, atol=1e-6)
  nearest = pr.point_sample(image, jnp.array([[[0.7, 0.3], [1.2, 0.5]]]), mode="nearest")
  np.testing.assert_allclose(nearest[0, :, 0], [2.0, 0.0])


@pytest.mark.parametrize("spatial", [(5, 7), (4, 3, 6)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_matches_an_independent_implementation(spatial, mode):
  rng = np.random.default_rng(0)
  features = rng.normal(size=(2, *spatial, 3)).astype(np.float32)
  coords = rng.uniform(-0.1, 1.1, size=(2, 17, len(spatial))).astype(np.float32)
  got = pr.point_sample(jnp.asarray(features), jnp.asarray(coords), mode=mode)
  np.testing.assert_allclose(got, naive_sample(features, coords, mode), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spatial", [(5, 7), (4, 3, 6)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_matches_torch_grid_sample(spatial, mode):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(1)
  features = rng.normal(size=(2, *spatial, 3)).astype(np.float32)
  coords = rng.uniform(-0.1, 1.1, size=(2, 17, len(spatial))).astype(np.float32)
  d = len(spatial)
  torch_input = torch.from_numpy(np.moveaxis(features, -1, 1))  # [B, C, *S]
  grid = torch.from_numpy(2 * coords[..., ::-1].copy() - 1)  # (x, y[, z]) = reversed axes
  grid = grid.reshape(2, 17, *([1] * (d - 1)), d)
  expected = torch.nn.functional.grid_sample(
    torch_input, grid, mode=mode, align_corners=False, padding_mode="zeros"
  )
  expected = expected.reshape(2, 3, 17).permute(0, 2, 1).numpy()
  got = pr.point_sample(jnp.asarray(features), jnp.asarray(coords), mode=mode)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_uncertainty_and_grid_points():
  logits = jnp.array([[[[2.0, 0.0], [0.1, 0.0]], [[0.0, 3.0], [1.0, 1.2]]]])  # [1, 2, 2, 2]
  u = pr.uncertainty(logits)
  np.testing.assert_allclose(u[0], [[-2.0, -0.1], [-3.0, -0.2]], atol=1e-6)
  index, coords = pr.uncertain_points_on_grid(u, 2)
  assert index[0].tolist() == [1, 3]
  np.testing.assert_allclose(coords[0], [[0.25, 0.75], [0.75, 0.75]])
  np.testing.assert_allclose(pr.uncertainty(jnp.array([[-0.5], [2.0]])), [-0.5, -2.0])


def test_training_points_prefer_uncertain_regions():
  """Logits that are uncertain only in the left column band: importance points land there."""
  cols = jnp.linspace(-1, 1, 32)
  margin = jnp.broadcast_to(jnp.where(cols < -0.5, 0.0, 5.0), (32, 32))
  logits = jnp.stack([margin, jnp.zeros_like(margin)], -1)[None]
  coords = pr.uncertain_points_with_randomness(jax.random.key(0), logits, 64, 3, 0.75)
  assert coords.shape == (1, 64, 2)
  important = coords[0, :48, 1]
  assert float(jnp.mean(important < 0.25)) > 0.9
  assert float(jnp.mean(coords[0, 48:, 1] < 0.25)) < 0.6


def test_fourier_features_shape_and_range():
  coords = jnp.array([[0.0, 1.0], [0.5, 0.5]])
  matrix = jnp.ones((2, 4))
  f = pr.fourier_features(coords, matrix)
  assert f.shape == (2, 8)
  np.testing.assert_allclose(f[1, :4], 0.0, atol=1e-6)  # the centre maps to 0 → sin 0
