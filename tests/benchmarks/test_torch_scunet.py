"""The independent PyTorch SCU-Net of the benchmark's torch leg: size, shapes, and equivalence.

Skipped when PyTorch (an optional benchmark dependency, `pip install -e .[bench]`) is missing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import torch_scunet
from mlsup_jax.nn.scunet import ScuNet

torch = pytest.importorskip("torch", reason="PyTorch is an optional benchmark dependency")


def _tensor(x, transpose=None):
  x = np.asarray(x, np.float32)
  return torch.from_numpy(np.array(x if transpose is None else x.transpose(transpose), order="C"))


def _conv(module, params):
  """Flax `[kh, kw, in, out]` kernels → PyTorch `[out, in, kh, kw]`."""
  module.weight.data = _tensor(params["kernel"], (3, 2, 0, 1))
  if "bias" in params:
    module.bias.data = _tensor(params["bias"])


def _bn(module, params, stats):
  module.weight.data, module.bias.data = _tensor(params["scale"]), _tensor(params["bias"])
  module.running_mean.data, module.running_var.data = _tensor(stats["mean"]), _tensor(stats["var"])


def _prelu(module, params):
  module.weight.data = _tensor(params["slope"]).reshape(module.weight.shape)


def _bn_prelu(seq, params, stats):
  _bn(seq[0], params["BatchNorm_0"], stats["BatchNorm_0"])
  _prelu(seq[1], params["PReLU_0"])


def _cbp(seq, params, stats):
  _conv(seq[0], params["Conv_0"])
  _bn_prelu(seq[1:], params["BNPReLU_0"], stats["BNPReLU_0"])


def load_flax_variables(model, variables) -> None:
  """Copies the JAX SCU-Net's variables into the PyTorch one (test-only weight port)."""
  p, s = variables["params"], variables["batch_stats"]
  for i in range(3):
    _cbp(model.stem[i], p[f"ConvBNPReLU_{i}"], s[f"ConvBNPReLU_{i}"])
  _bn_prelu(model.inject1, p["BNPReLU_0"], s["BNPReLU_0"])
  _bn_prelu(model.inject2, p["BNPReLU_1"], s["BNPReLU_1"])
  for i, down in enumerate((model.down1, model.down2)):
    dp, ds = p[f"ContextGuidedDown_{i}"], s[f"ContextGuidedDown_{i}"]
    _cbp(down.reduce, dp["ConvBNPReLU_0"], ds["ConvBNPReLU_0"])
    _conv(down.local, dp["Conv_0"])
    _conv(down.surround, dp["Conv_1"])
    _bn_prelu(down.joint, dp["BNPReLU_0"], ds["BNPReLU_0"])
    _conv(down.fuse, dp["Conv_2"])
    for j, fc in enumerate((down.glo.fc1, down.glo.fc2)):
      fc.weight.data = _tensor(dp["GlobalContext_0"][f"Dense_{j}"]["kernel"], (1, 0))
      fc.bias.data = _tensor(dp["GlobalContext_0"][f"Dense_{j}"]["bias"])
  for i, up in enumerate((model.up1, model.up2)):
    up_p, up_s = p[f"DoubleConv_{i}"], s[f"DoubleConv_{i}"]
    for j in range(2):
      _conv(up[3 * j], up_p[f"Conv_{j}"])
      _bn(up[3 * j + 1], up_p[f"BatchNorm_{j}"], up_s[f"BatchNorm_{j}"])
      _prelu(up[3 * j + 2], up_p[f"PReLU_{j}"])
  _conv(model.head, p["Conv_0"])


def test_parameter_count_and_output_shape():
  model = torch_scunet.build_scunet()
  assert torch_scunet.count_parameters(model) == 169_711
  assert torch_scunet.count_parameters(torch_scunet.build_scunet(num_classes=2)) == 169_711 + 33
  with torch.no_grad():
    assert model.eval()(torch.zeros(2, 3, 64, 96)).shape == (2, 1, 64, 96)
  with pytest.raises(ValueError, match="multiples of 8"):
    model(torch.zeros(1, 3, 60, 64))


@pytest.mark.parametrize("train", [False, True])
def test_same_function_as_the_jax_network_with_ported_weights(train):
  """Eval mode (running statistics) and train mode (batch statistics, no dropout) agree."""
  jax_model = ScuNet(dropout_rate=0.0)
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = jax.jit(lambda k: jax_model.init(k, x, train=False))(jax.random.key(1))
  # Random BatchNorm affine/statistics and PReLU slopes, so that every parameter matters.
  leaves, treedef = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  leaves = [
    leaf + 0.1 * jax.random.normal(k, leaf.shape)
    if leaf.ndim <= 1
    else leaf * (1 + 0.1 * jax.random.normal(k, leaf.shape))
    for leaf, k in zip(leaves, keys, strict=True)
  ]
  variables = jax.tree.unflatten(treedef, leaves)
  variables["batch_stats"] = jax.tree.map(jnp.abs, variables["batch_stats"])
  if train:
    expected, _ = jax_model.apply(variables, x, train=True, mutable=["batch_stats"])
  else:
    expected = jax_model.apply(variables, x, train=False)

  model = torch_scunet.build_scunet(dropout_rate=0.0)
  load_flax_variables(model, jax.device_get(variables))
  model.train(train)
  with torch.no_grad():
    got = model(_tensor(x, (0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-4, atol=1e-4)


def test_soft_dice_loss_matches_the_definition():
  logits = torch.tensor([[[[0.0, 100.0], [-100.0, 0.0]]]])
  target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
  # probs 0.5, 1, 0, 0.5: intersection 1.5, sum(p) + sum(t) = 2 + 2.
  expected = 1 - (2 * 1.5 + 1) / (4 + 1)
  assert torch_scunet.soft_dice_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_benchmark_torch_scunet_report():
  rep = torch_scunet.benchmark_torch_scunet(batch=2, size=32, warmup=0, iters=1, device="cpu")
  assert rep["leg"] == "torch" and rep["batch_size"] == 2 and rep["parameters"] == 169_711
  assert rep["step_ms_min"] > 0 and rep["step_ms_median"] > 0 and rep["examples_per_s"] > 0
  assert rep["flops_per_step"] is None and rep["memory"] == {"peak_bytes": None}
