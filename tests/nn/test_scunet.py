"""Tests of the SCU-Net network and its building blocks (mlsup_jax.nn)."""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsup_jax.nn.layers import PReLU, avg_pool_3x3_s2, upsample_bilinear_2x
from mlsup_jax.nn.scunet import ScuNet


def _count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def variables():
  return jax.jit(lambda key: ScuNet().init(key, jnp.zeros((1, 32, 32, 3)), train=False))(
    jax.random.key(0)
  )


@jax.jit
def _eval_apply(variables, x):
  return ScuNet().apply(variables, x, train=False)


def test_parameter_count_matches_the_authors_layout(variables):
  """169,711 trainable parameters for 3 input channels and 1 class (module docstring)."""
  assert set(variables) == {"params", "batch_stats"}
  assert _count(variables["params"]) == 169_711
  # The count does not depend on the spatial size.
  shapes = jax.eval_shape(
    lambda: ScuNet().init(jax.random.key(0), jnp.zeros((1, 64, 96, 3)), train=False)
  )
  assert _count(shapes["params"]) == 169_711
  # One extra output class adds one 1×1 conv column: 32 weights + 1 bias.
  shapes = jax.eval_shape(
    lambda: ScuNet(num_classes=2).init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
  )
  assert _count(shapes["params"]) == 169_711 + 33


@pytest.mark.parametrize("height, width", [(64, 64), (96, 64)])
def test_output_shape_and_dtype(variables, height, width):
  x = jax.random.normal(jax.random.key(1), (2, height, width, 3))
  logits = _eval_apply(variables, x)
  assert logits.shape == (2, height, width, 1)
  assert logits.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(logits)))


def test_bfloat16_compute_returns_float32_logits(variables):
  x = jax.random.normal(jax.random.key(2), (2, 64, 64, 3))
  model = ScuNet(dtype=jnp.bfloat16)
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert logits.dtype == jnp.float32
  assert logits.shape == (2, 64, 64, 1)
  # Params stay float32 when initialised with bf16 compute.
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))["params"]
  assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  # bf16 compute approximates the float32 result.
  reference = _eval_apply(variables, x)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(reference), atol=0.15, rtol=0.1)


@pytest.mark.parametrize("shape", [(1, 60, 64, 3), (1, 64, 36, 3), (64, 64, 3)])
def test_bad_input_shape_raises(variables, shape):
  with pytest.raises(ValueError, match="multiples of 8"):
    jax.eval_shape(lambda v: ScuNet().apply(v, jnp.zeros(shape), train=False), variables)


def test_train_mode_needs_dropout_rng_and_updates_batch_stats(variables):
  model = ScuNet()
  x = jax.random.normal(jax.random.key(3), (2, 64, 64, 3)) * 2.0 + 1.0
  with pytest.raises(flax.errors.InvalidRngError):
    jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]), variables)

  @jax.jit
  def train_apply(v, key):
    return model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})

  logits, updates = train_apply(variables, jax.random.key(4))
  assert logits.shape == (2, 64, 64, 1)
  old = jax.tree.leaves(variables["batch_stats"])
  new = jax.tree.leaves(updates["batch_stats"])
  assert len(old) == len(new) > 0
  assert all(a.shape == b.shape for a, b in zip(old, new, strict=True))
  assert all(not np.allclose(a, b) for a, b in zip(old, new, strict=True))
  # Dropout makes train mode stochastic; eval mode is deterministic.
  other, _ = train_apply(variables, jax.random.key(5))
  assert not np.allclose(logits, other)
  np.testing.assert_array_equal(_eval_apply(variables, x), _eval_apply(variables, x))


# ----------------------------------------------------------------------------------------------
# Layers.


def test_prelu_per_channel_matches_numpy():
  x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
  params = PReLU().init(jax.random.key(0), jnp.asarray(x))["params"]
  assert params["slope"].shape == (4,)
  np.testing.assert_array_equal(params["slope"], np.full(4, 0.25, np.float32))
  slope = np.array([0.1, -0.5, 0.0, 2.0], np.float32)
  y = PReLU().apply({"params": {"slope": jnp.asarray(slope)}}, jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(y), np.where(x >= 0, x, slope * x), rtol=1e-6)


def test_prelu_shared_slope_matches_numpy():
  x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
  params = PReLU(per_channel=False).init(jax.random.key(0), jnp.asarray(x))["params"]
  assert params["slope"].shape == ()
  assert float(params["slope"]) == 0.25
  y = PReLU(per_channel=False).apply({"params": params}, jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(y), np.where(x >= 0, x, 0.25 * x), rtol=1e-6)
  params = PReLU(per_channel=False, init_value=0.7).init(jax.random.key(0), jnp.asarray(x))
  assert float(params["params"]["slope"]) == pytest.approx(0.7)


def _np_avg_pool_3x3_s2_torch(x):
  """PyTorch AvgPool2d(kernel=3, stride=2, padding=1, count_include_pad=True), NHWC."""
  b, h, w, c = x.shape
  padded = np.zeros((b, h + 2, w + 2, c), x.dtype)
  padded[:, 1:-1, 1:-1] = x
  out_h, out_w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
  out = np.zeros((b, out_h, out_w, c), np.float64)
  for i in range(out_h):
    for j in range(out_w):
      out[:, i, j] = padded[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].sum(axis=(1, 2)) / 9.0
  return out


def test_avg_pool_matches_torch_semantics_on_6x6():
  x = np.arange(2 * 6 * 6 * 2, dtype=np.float32).reshape(2, 6, 6, 2)
  y = np.asarray(avg_pool_3x3_s2(jnp.asarray(x)))
  assert y.shape == (2, 3, 3, 2)
  np.testing.assert_allclose(y, _np_avg_pool_3x3_s2_torch(x), rtol=1e-6)
  # Corner: the four real pixels divided by 9 (padding counts), not by 4.
  corner = (x[0, 0, 0, 0] + x[0, 0, 1, 0] + x[0, 1, 0, 0] + x[0, 1, 1, 0]) / 9.0
  assert y[0, 0, 0, 0] == pytest.approx(corner)


def test_upsample_bilinear_2x_shape_and_constant():
  x = jnp.full((1, 3, 5, 2), 1.5)
  y = upsample_bilinear_2x(x)
  assert y.shape == (1, 6, 10, 2)
  np.testing.assert_allclose(np.asarray(y), 1.5, rtol=1e-6)
