"""The PyTorch PMS leg: the same network size as the JAX step's, and both stages' steps run."""

import jax
import jax.numpy as jnp
import pytest

from configs import pms as pms_config
from mlsup_jax.nn import build_model

torch = pytest.importorskip("torch")

from benchmarks import torch_pms  # noqa: E402


def test_same_parameter_count_as_the_jax_network():
  config = pms_config.get_config("smoke")
  variables = build_model(config.model).init(
    jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False
  )
  jax_count = sum(p.size for p in jax.tree.leaves(variables["params"]))
  net = torch_pms.build_pms_network(torch, config, in_channels=1)
  assert sum(p.numel() for p in net.parameters()) == jax_count


@pytest.mark.parametrize("stage", ["warmup", "pms"])
def test_the_step_runs(stage):
  config = pms_config.get_config("smoke")
  report = torch_pms.benchmark_torch_pms(
    config, batch=4, warmup=1, iters=1, image_shape=(32, 32, 1), stage=stage
  )
  assert report["leg"] == "torch" and report["step_ms_median"] > 0
