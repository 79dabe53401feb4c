"""The CPU-friendly stride-2 convolutions equal Flax's `Conv` / `ConvTranspose` exactly."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsup_jax.nn.layers import Conv4x4Stride2, SubPixelConvTranspose, im2col_conv


def _random_params(module, x, key):
  variables = module.init(jax.random.key(0), x)
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
    tree,
    [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves, strict=True)],
  )


@pytest.mark.parametrize("im2col", [True, False])
@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (3, 2, 2, 5)])
def test_conv4x4_stride2_equals_flax_conv(im2col, shape):
  x = jax.random.normal(jax.random.key(1), shape)
  reference = nn.Conv(4, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))
  variables = _random_params(reference, x, jax.random.key(2))
  ours = Conv4x4Stride2(4, im2col=im2col)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x)) == jax.tree.map(
    jnp.shape, variables
  )
  np.testing.assert_allclose(ours.apply(variables, x), reference.apply(variables, x), atol=1e-5)


@pytest.mark.parametrize("im2col", [True, False])
@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (3, 2, 2, 6), (1, 1, 1, 2)])
def test_subpixel_transposed_conv_equals_flax_conv_transpose(im2col, shape):
  x = jax.random.normal(jax.random.key(3), shape)
  reference = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))
  variables = _random_params(reference, x, jax.random.key(4))
  ours = SubPixelConvTranspose(4, im2col=im2col)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x)) == jax.tree.map(
    jnp.shape, variables
  )
  got, want = ours.apply(variables, x), reference.apply(variables, x)
  assert got.shape == (shape[0], 2 * shape[1], 2 * shape[2], 4)
  np.testing.assert_allclose(got, want, atol=1e-5)
  # Gradients agree too (the training path).
  loss = lambda m: lambda v: jnp.sum(jnp.sin(m.apply(v, x)))
  g_ours, g_ref = jax.grad(loss(ours))(variables), jax.grad(loss(reference))(variables)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_im2col_conv_matches_lax_for_other_kernels():
  x = jax.random.normal(jax.random.key(5), (2, 9, 7, 3))
  kernel = jax.random.normal(jax.random.key(6), (3, 5, 3, 4))
  for stride, pad in ((1, 0), (2, 1), (3, 2)):
    want = jax.lax.conv_general_dilated(
      x,
      kernel,
      (stride, stride),
      ((pad, pad), (pad, pad)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    np.testing.assert_allclose(im2col_conv(x, kernel, stride, pad), want, atol=1e-4)


def test_bf16_compute_keeps_float32_params():
  x = jnp.ones((1, 4, 4, 2))
  for module in (
    Conv4x4Stride2(3, dtype=jnp.bfloat16),
    SubPixelConvTranspose(3, dtype=jnp.bfloat16),
  ):
    variables = module.init(jax.random.key(0), x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    assert module.apply(variables, x).dtype == jnp.bfloat16
