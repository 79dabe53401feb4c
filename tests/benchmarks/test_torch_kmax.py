"""The independent PyTorch kMaX / U-Net of the MaxQuery torch leg: size, port, loss, benchmark.

The Flax variables of small networks are ported into the PyTorch ones, which must then compute
the same outputs (eval mode with running statistics, train mode with batch statistics), the same
MaxQuery loss and the same gradients. Skipped when PyTorch (an optional benchmark dependency,
`pip install -e .[bench]`) is missing.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import torch_kmax
from configs import maxquery
from mlsup_jax import losses
from mlsup_jax.losses import mask_transformer
from mlsup_jax.methods.maxquery import build_kmax as build_model
from mlsup_jax.nn.unet import UNet

torch = pytest.importorskip("torch", reason="PyTorch is an optional benchmark dependency")

TOL = {"rtol": 1e-4, "atol": 1e-4}
# XLA's cheap CPU backend passes: the same arithmetic, compiled in about half the time.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
  """One intra-op thread: on a busy 2-core host, PyTorch's spinning OpenMP team is 10× slower."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def _tensor(x, transpose=None):
  x = np.asarray(x, np.float32)
  return torch.from_numpy(np.array(x if transpose is None else x.transpose(transpose), order="C"))


def _conv(module, params):
  """Flax `[*k, in, out]` kernels → PyTorch `[out, in, *k]` (1×1 convs from Dense kernels)."""
  kernel = np.asarray(params["kernel"])
  if kernel.ndim == 2:  # A Dense kernel applied per pixel.
    kernel = kernel.reshape((1,) * (module.weight.ndim - 2) + kernel.shape)
  n = kernel.ndim
  module.weight.data = _tensor(kernel, (n - 1, n - 2, *range(n - 2)))
  if "bias" in params:
    module.bias.data = _tensor(params["bias"])


def _conv_transpose(module, params):
  """Flax `ConvTranspose` `[*k, in, out]` → PyTorch `[in, out, *k]`, spatially flipped."""
  kernel = np.asarray(params["kernel"])
  n = kernel.ndim
  kernel = np.flip(kernel, axis=tuple(range(n - 2)))
  module.weight.data = _tensor(kernel, (n - 2, n - 1, *range(n - 2)))


def _dense(module, params):
  module.weight.data = _tensor(params["kernel"], (1, 0))
  if "bias" in params:
    module.bias.data = _tensor(params["bias"])


def _norm(module, params, stats=None):
  module.weight.data, module.bias.data = _tensor(params["scale"]), _tensor(params["bias"])
  if stats is not None:
    module.running_mean.data = _tensor(stats["mean"])
    module.running_var.data = _tensor(stats["var"])


def _backbone(model, p):
  """`UNetBackbone` params (instance norm: no statistics)."""
  levels = len(model.encoder)
  for i in range(2 * levels):
    block, cp = model.encoder[i // 2][i % 2], p[f"ConvNormAct_{i}"]
    _conv(block.conv, cp["Conv_0"])
    _norm(block.norm, cp["InstanceNorm_0"])
  for j, (up, level) in enumerate(zip(model.up, model.decoder, strict=True)):
    _conv_transpose(up, p[f"ConvTranspose_{j}"])
    for t in range(2):
      cp = p[f"ConvNormAct_{2 * levels + 2 * j + t}"]
      _conv(level[t].conv, cp["Conv_0"])
      _norm(level[t].norm, cp["InstanceNorm_0"])


def _pixel_space(seq, p, s):
  _conv(seq[0], p["Dense_0"])
  _norm(seq[1], p["BatchNorm_0"], s["BatchNorm_0"])


def _predictor(pred, p, s):
  if pred.depthwise is not None:
    _conv(pred.depthwise, p["Conv_0"])
  norms = (pred.norm0, pred.norm1, pred.norm2, pred.query_norm, pred.affinity_norm)
  for i, norm in enumerate(norms):
    _norm(norm, p[f"BatchNorm_{i}"], s[f"BatchNorm_{i}"])
  _conv(pred.conv1, p["Dense_0"])
  _conv(pred.conv2, p["Dense_1"])
  _dense(pred.query_proj, p["Dense_2"])
  _dense(pred.classifier, p["Dense_3"])


def _heads_in(module, kernel):
  """`[D, heads, head_dim]` DenseGeneral kernel → `Linear(D, heads · head_dim)`."""
  kernel = np.asarray(kernel)
  module.weight.data = _tensor(kernel.reshape(kernel.shape[0], -1), (1, 0))


def _layer(layer, p, s):
  _pixel_space(layer.pixel_space, p["PixelSpace_0"], s["PixelSpace_0"])
  _predictor(layer.predictor, p["KMaXPredictor_0"], s["KMaXPredictor_0"])
  _conv(layer.value, p["Dense_0"])
  _dense(layer.update, p["Dense_1"])
  _dense(layer.ffn1, p["Dense_2"])
  _dense(layer.ffn2, p["Dense_3"])
  norms = (
    layer.delta_norm,
    layer.update_norm,
    layer.attention_norm,
    layer.ffn_norm,
    layer.ffn_out_norm,
  )
  for i, norm in enumerate(norms):
    _norm(norm, p[f"BatchNorm_{i}"], s[f"BatchNorm_{i}"])
  mha = p["MultiHeadDotProductAttention_0"]
  _heads_in(layer.query, mha["query"]["kernel"])
  _heads_in(layer.key, mha["key"]["kernel"])
  _heads_in(layer.value_proj, mha["value"]["kernel"])
  out = np.asarray(mha["out"]["kernel"])
  layer.out.weight.data = _tensor(out.reshape(-1, out.shape[-1]), (1, 0))


def load_kmax_variables(model, variables) -> None:
  """Copies a Flax `KMaX`'s params and batch statistics into the PyTorch one (test-only)."""
  p, s = variables["params"], variables["batch_stats"]
  _backbone(model.backbone, p["UNetBackbone_0"])
  model.cluster_centres.data = _tensor(p["cluster_centres"])
  for i, layer in enumerate(model.layers):
    _layer(layer, p[f"KMaXLayer_{i}"], s[f"KMaXLayer_{i}"])
  _pixel_space(model.pixel_space, p["PixelSpace_0"], s["PixelSpace_0"])
  _predictor(model.predictor, p["KMaXPredictor_0"], s["KMaXPredictor_0"])


def load_unet_variables(model, variables) -> None:
  p = variables["params"]
  _backbone(model.backbone, p["UNetBackbone_0"])
  _conv(model.head, p["Conv_0"])


def _random_variables(model, x, **kwargs):
  """Random Flax variables of `model` (drawn with NumPy: no init to compile).

  Norm scales are `1 ± 0.3` (the zero-initialised BN scales included) and biases / statistics
  random, so that every parameter matters.
  """
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, **kwargs))

  def draw(path, leaf):
    name, shape = jax.tree_util.keystr(path[-1:]), leaf.shape
    if "kernel" in name:
      fan_in = shape[0] if len(shape) == 3 and "out" not in jax.tree_util.keystr(path) else None
      fan_in = fan_in or int(np.prod(shape[:-1]))
      return rng.normal(0.0, fan_in**-0.5, shape)
    if "scale" in name:
      return 1.0 + 0.3 * rng.normal(size=shape)
    if "var" in name:
      return 0.5 + 0.5 * np.abs(rng.normal(size=shape))
    return (1.0 if "cluster_centres" in name else 0.3) * rng.normal(size=shape)

  return jax.tree_util.tree_map_with_path(lambda p, v: draw(p, v).astype(np.float32), shapes)


def _smoke_config(kernel=1, spatial_dims=2):
  config = maxquery.get_config("smoke" + (",3d" if spatial_dims == 3 else ""))
  with config.unlocked():
    config.model.pixel_head_kernel = kernel
  return config


def _ported_kmax(config, spatial):
  """(Flax model, random variables, input `[2, *S, 1]`, PyTorch model with those weights)."""
  jax_model = build_model(config)
  x = np.random.default_rng(1).normal(size=(2, *spatial, 1)).astype(np.float32)
  variables = _random_variables(jax_model, x, train=False)
  model = torch_kmax.build_kmax(config, in_channels=1)
  load_kmax_variables(model, variables)
  return jax_model, variables, x, model


def _labels(shape, num_classes=5):
  return np.random.default_rng(3).integers(0, num_classes, shape).astype(np.int32)


def _channels_first(x):
  x = np.asarray(x)
  return _tensor(x, (0, x.ndim - 1, *range(1, x.ndim - 1)))


def _channels_last(t):
  x = t.detach().numpy()
  return x.transpose(0, *range(2, x.ndim), 1)


def _as_torch_outputs(outputs):
  """JAX `KMaX` outputs (`[B, *S, N]`) → the PyTorch layout (`[B, N, *S]`)."""

  def layer(o):
    return {
      "mask_logits": _channels_first(o["mask_logits"]),
      "class_logits": _tensor(o["class_logits"]),
    }

  return {**layer(outputs), "aux": tuple(layer(o) for o in outputs["aux"])}


def _jitted(fn, *args):
  """`fn(*args)` compiled with `FAST_COMPILE`, as NumPy."""
  return jax.device_get(jax.jit(fn).lower(*args).compile(FAST_COMPILE)(*args))


def _assert_close(got, expected, tol=1e-4):
  """Agreement to `tol`, relative to the array's scale (eval-mode logits reach ~10²)."""
  expected = np.asarray(expected)
  scale = max(1.0, float(np.max(np.abs(expected))))
  np.testing.assert_allclose(np.asarray(got), expected, rtol=tol, atol=tol * scale)


def _assert_outputs_close(got, expected):
  for g, e in zip((got, *got["aux"]), (expected, *expected["aux"]), strict=True):
    _assert_close(_channels_last(g["mask_logits"]), e["mask_logits"])
    _assert_close(g["class_logits"].detach().numpy(), e["class_logits"])


@pytest.mark.parametrize("kernel", [1, 5])
def test_parameter_counts_match_the_jax_models(kernel):
  config = _smoke_config(kernel)
  x = jnp.zeros((1, 32, 32, 1))
  variables = jax.eval_shape(lambda: build_model(config).init(jax.random.key(0), x, train=False))
  expected = sum(v.size for v in jax.tree.leaves(variables["params"]))
  assert torch_kmax.count_parameters(torch_kmax.build_kmax(config)) == expected
  unet_config = maxquery.get_config("smoke,variant=unet")
  m = unet_config.model
  unet = UNet(num_classes=m.num_classes, features=tuple(m.features))
  variables = jax.eval_shape(lambda: unet.init(jax.random.key(0), x, train=False))
  expected = sum(v.size for v in jax.tree.leaves(variables["params"]))
  assert torch_kmax.count_parameters(torch_kmax.build_unet(unet_config)) == expected


def _jax_loss_fn(jax_model, config, variables, x, labels):
  """`params → (MaxQuery loss, train-mode outputs)` of the Flax model."""

  def loss_fn(params):
    outputs, _ = jax_model.apply(
      {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
    )
    loss, _ = mask_transformer.deep_supervision(
      config.loss,
      outputs=outputs,
      batch={"label": labels},
      aux_weight=config.train.deep_supervision_weight,
    )
    return loss, outputs

  return loss_fn


@pytest.mark.parametrize("kernel", [1, 5])
def test_kmax_matches_the_jax_network_with_ported_weights(kernel):
  """Eval mode (running statistics), train mode (batch statistics) and the MaxQuery loss."""
  config = _smoke_config(kernel)
  jax_model, variables, x, model = _ported_kmax(config, (32, 32))
  labels = _labels((2, 32, 32))
  loss_fn = _jax_loss_fn(jax_model, config, variables, x, labels)

  def reference(variables):
    jax_loss, train_outputs = loss_fn(variables["params"])
    return jax_model.apply(variables, x, train=False), train_outputs, jax_loss

  eval_outputs, train_outputs, jax_loss = _jitted(reference, variables)
  xt, labels_t = _channels_first(x), torch.from_numpy(labels.astype(np.int64))

  model.eval()
  with torch.no_grad():
    _assert_outputs_close(model(xt), eval_outputs)
  model.train()
  with torch.no_grad():
    got = model(xt)
  _assert_outputs_close(got, train_outputs)
  # The PyTorch loss of the JAX outputs, and of the PyTorch network's own outputs.
  torch_loss = torch_kmax.deep_supervision(
    config.loss,
    _as_torch_outputs(train_outputs),
    labels_t,
    config.train.deep_supervision_weight,
  )
  np.testing.assert_allclose(torch_loss.item(), float(jax_loss), **TOL)
  loss = torch_kmax.deep_supervision(
    config.loss, got, labels_t, config.train.deep_supervision_weight
  )
  np.testing.assert_allclose(loss.item(), float(jax_loss), **TOL)


@pytest.mark.slow  # A backward pass to compile: ~15 s on a busy 2-core CPU.
def test_kmax_gradients_match_the_jax_train_step():
  """Loss gradients of the centres, the first conv, decoder class heads, FFN and query head."""
  config = _smoke_config(1)
  jax_model, variables, x, model = _ported_kmax(config, (32, 32))
  labels = _labels((2, 32, 32))
  loss_fn = _jax_loss_fn(jax_model, config, variables, x, labels)
  grads = _jitted(lambda v: jax.grad(lambda p: loss_fn(p)[0])(v["params"]), variables)
  loss = torch_kmax.deep_supervision(
    config.loss,
    model.train()(_channels_first(x)),
    torch.from_numpy(labels.astype(np.int64)),
    config.train.deep_supervision_weight,
  )
  loss.backward()
  conv0 = grads["UNetBackbone_0"]["ConvNormAct_0"]["Conv_0"]["kernel"]
  pairs = [
    (model.cluster_centres.grad, grads["cluster_centres"]),
    (model.backbone.encoder[0][0].conv.weight.grad, np.transpose(conv0, (3, 2, 0, 1))),
    (
      model.layers[0].predictor.classifier.weight.grad,
      grads["KMaXLayer_0"]["KMaXPredictor_0"]["Dense_3"]["kernel"].T,
    ),
    (model.layers[1].ffn1.weight.grad, grads["KMaXLayer_1"]["Dense_2"]["kernel"].T),
    (model.predictor.query_proj.weight.grad, grads["KMaXPredictor_0"]["Dense_2"]["kernel"].T),
  ]
  for got, expected in pairs:
    assert np.max(np.abs(expected)) > 0
    _assert_close(got.numpy(), expected, tol=1e-3)


def test_kmax_3d_matches_the_jax_network():
  config = _smoke_config(5, spatial_dims=3)
  jax_model, variables, x, model = _ported_kmax(config, (4, 8, 8))
  expected = _jitted(lambda v: jax_model.apply(v, x, train=False), variables)
  with torch.no_grad():
    _assert_outputs_close(model.eval()(_channels_first(x)), expected)


def test_unet_matches_the_jax_network_with_ported_weights():
  config = maxquery.get_config("smoke,variant=unet")
  m = config.model
  jax_model = UNet(num_classes=m.num_classes, features=tuple(m.features))
  x = np.random.default_rng(1).normal(size=(2, 32, 32, 1)).astype(np.float32)
  variables = _random_variables(jax_model, x, train=False)
  labels = _labels((2, 32, 32))

  def reference(variables):
    logits = jax_model.apply(variables, x, train=False)
    loss, _ = losses.weighted_sum(config.loss, outputs={"logits": logits}, batch={"label": labels})
    return logits, loss

  expected, jax_loss = _jitted(reference, variables)
  model = torch_kmax.build_unet(config)
  load_unet_variables(model, variables)
  with torch.no_grad():
    got = model.eval()(_channels_first(x))
  _assert_close(_channels_last(got), expected)
  torch_loss = torch_kmax.weighted_sum(
    config.loss, {"logits": got}, torch.from_numpy(labels.astype(np.int64))
  )
  np.testing.assert_allclose(torch_loss.item(), float(jax_loss), **TOL)


@pytest.mark.parametrize(
  "per_sample,qd_reduction", [(False, "pixel"), (True, "pixel"), (False, "group_balanced")]
)
def test_losses_match_the_jax_losses_on_random_outputs(per_sample, qd_reduction):
  """Every term (and the down-sampling of aux labels) on random logits, background excluded."""
  config = _smoke_config()
  with config.unlocked():
    config.loss.query_distribution.balance = qd_reduction
    config.loss.soft_dice.per_sample = per_sample
    config.loss.soft_dice.include_background = False
    config.loss.cross_entropy.label_smoothing = 0.1
    config.train.deep_supervision_weight = 0.5
  rng = np.random.default_rng(0)
  outputs = {
    "mask_logits": 3 * rng.normal(size=(2, 16, 16, 32)),
    "class_logits": 3 * rng.normal(size=(2, 32, 5)),
    "aux": (
      {"mask_logits": rng.normal(size=(2, 4, 4, 32)), "class_logits": rng.normal(size=(2, 32, 5))},
    ),
  }
  outputs = jax.tree.map(lambda a: a.astype(np.float32), outputs)
  labels = _labels((2, 16, 16))
  expected = _jitted(
    lambda o: mask_transformer.deep_supervision(
      config.loss,
      outputs=o,
      batch={"label": labels},
      aux_weight=config.train.deep_supervision_weight,
    )[0],
    outputs,
  )
  got = torch_kmax.deep_supervision(
    config.loss,
    _as_torch_outputs(outputs),
    torch.from_numpy(labels.astype(np.int64)),
    config.train.deep_supervision_weight,
  )
  np.testing.assert_allclose(got.item(), float(expected), **TOL)


@pytest.mark.parametrize("variant", ["maxquery", "unet"])
def test_torch_leg_reports(variant):
  """`benchmarks.run.torch_leg` dispatches MaxQuery configs to these benchmarks."""
  from benchmarks import run

  config = maxquery.get_config(f"smoke,variant={variant}")
  jit_report = {"batch_size": 2, "input_shapes": {"image": [2, 16, 16, 1], "label": [2, 16, 16]}}
  rep = run.torch_leg(config, jit_report, warmup=0, iters=1)
  assert rep["leg"] == "torch" and rep["batch_size"] == 2 and rep["iters"] == 1
  assert rep["step_ms_min"] > 0 and rep["step_ms_median"] > 0 and rep["examples_per_s"] > 0
  assert rep["flops_per_step"] is None and rep["memory"] == {"peak_bytes": None}
  build = torch_kmax.build_unet if variant == "unet" else torch_kmax.build_kmax
  assert rep["parameters"] == torch_kmax.count_parameters(build(config))


def test_benchmarks_skip_without_torch(monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError.
  config = maxquery.get_config("smoke")
  for bench in (torch_kmax.benchmark_torch_kmax, torch_kmax.benchmark_torch_unet):
    assert bench(config, 2, 0, 1) == {"leg": "torch", "skipped": "torch not installed"}
