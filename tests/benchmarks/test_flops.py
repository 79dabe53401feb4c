"""The FLOP count MFU is built on: a step's CPU lowering against an analytic count."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from benchmarks import harness


def _conv(x, w):
  return jax.lax.conv_general_dilated(
    x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


def conv_flops(batch: int, out_hw: int, k: int, c_in: int, c_out: int) -> int:
  """2 FLOPs per multiply-add of a VALID convolution (every tap touches real input)."""
  return 2 * batch * out_hw * out_hw * c_out * k * k * c_in


def test_cpu_lowering_counts_a_conv_nets_gradient_step_analytically():
  # Two VALID 3×3 convolutions, gradients of both kernels (not of the input): forward F1 + F2,
  # conv 2's kernel and input gradients F2 each, conv 1's kernel gradient F1.
  x = jnp.ones((2, 12, 12, 4))
  params = {"w1": jnp.ones((3, 3, 4, 16)), "w2": jnp.ones((3, 3, 16, 16))}

  def step(params, x):
    loss = lambda p: jnp.mean(_conv(jax.nn.relu(_conv(x, p["w1"])), p["w2"]) ** 2)
    grads = jax.grad(loss)(params)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)

  f1, f2 = conv_flops(2, 10, 3, 4, 16), conv_flops(2, 8, 3, 16, 16)
  analytic = 2 * f1 + 3 * f2
  counted = harness.cpu_lowering_flops(step, params, x)
  # The rest (ReLU, squares, the mean, the update) is < 1% here.
  assert counted == pytest.approx(analytic, rel=0.01)
  # The compiled CPU program counts the same.
  compiled = harness.xla_flops(jax.jit(step).lower(params, x).compile())
  assert compiled == pytest.approx(counted, rel=0.01)


def test_cpu_lowering_of_a_matmul_is_exact():
  assert harness.cpu_lowering_flops(lambda a, b: a @ b, jnp.ones((4, 8)), jnp.ones((8, 2))) == 128
