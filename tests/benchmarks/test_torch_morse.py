"""The PyTorch U-Net + MORSE leg: same parameter count as the JAX model, and a step runs."""

import jax
import jax.numpy as jnp
import pytest

from configs import morse as morse_config
from mlsup_jax.nn import build_model

torch = pytest.importorskip("torch")

from benchmarks import torch_morse  # noqa: E402


@pytest.mark.parametrize("options", ["small", "smoke,3d"])
def test_same_parameter_count_as_the_jax_model(options):
  config = morse_config.get_config(options)
  model = build_model(config.model, spatial_dims=config.data.spatial_dims)
  spatial = (32, 32) if config.data.spatial_dims == 2 else (32, 32, 8)
  variables = model.init(
    {"params": jax.random.key(0), "dropout": jax.random.key(1)},
    jnp.zeros((1, *spatial, 1)),
    train=False,
  )
  jax_count = sum(p.size for p in jax.tree.leaves(variables["params"]))
  torch_model = torch_morse.build_morse(config)
  torch_count = sum(p.numel() for p in torch_model.parameters())
  assert torch_count == jax_count


def test_the_step_runs():
  config = morse_config.get_config("smoke")
  report = torch_morse.benchmark_torch_morse(config, batch=2, warmup=1, iters=1)
  assert report["leg"] == "torch" and report["step_ms_median"] > 0
