"""The PyTorch LTUDA leg: the same network size as the JAX step's, and both stages' steps run."""

import jax
import jax.numpy as jnp
import pytest

from configs import ltuda as ltuda_config
from mlsup_jax.methods.ltuda import LtudaMethod

torch = pytest.importorskip("torch")

from benchmarks import torch_ltuda  # noqa: E402
from benchmarks.torch_semi_supervised import build_action_pp_unet  # noqa: E402


def test_same_parameter_count_as_the_jax_step():
  config = ltuda_config.get_config("small")
  method = LtudaMethod(config)
  state = method.init(jax.random.key(0), {"image": jnp.zeros((1, 48, 48, 1))})
  jax_count = sum(p.size for p in jax.tree.leaves(state.params))
  # The JAX parameters also hold the prototype heads' two LayerNorms (torch: separate modules).
  dim, classes = config.model.embedding_dim, config.model.num_classes + 1
  torch_count = sum(p.numel() for p in build_action_pp_unet(config).parameters())
  assert torch_count + 2 * dim + 2 * classes == jax_count


@pytest.mark.parametrize("stage", ["cda", "cda_pda"])
def test_the_step_runs(stage):
  config = ltuda_config.get_config("smoke")
  report = torch_ltuda.benchmark_torch_ltuda(
    config, batch=1, warmup=1, iters=1, image_shape=(32, 32, 1), stage=stage
  )
  assert report["leg"] == "torch" and report["step_ms_median"] > 0
