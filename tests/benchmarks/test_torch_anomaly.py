"""The independent PyTorch TEND / CVAD networks of the torch legs: size, port, losses, benchmark.

The Flax variables of the smoke-size networks are ported into the PyTorch ones, which must then
compute the same outputs (eval mode with running statistics, train mode with batch statistics),
and the PyTorch losses must equal the JAX ones. Also the harness's stage selection the TEND /
CVAD benchmarks rely on. Skipped when PyTorch (an optional benchmark dependency,
`pip install -e .[bench]`) is missing.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from benchmarks import harness, run, torch_anomaly
from configs import cvad as cvad_config
from configs import tend as tend_config
from mlsup_jax import losses
from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core.method import Stage
from mlsup_jax.core.run_setup import RunSetup
from mlsup_jax.core.state import TrainState
from mlsup_jax.losses import anomaly
from mlsup_jax.methods.cvad import CvadMethod
from mlsup_jax.methods.tend import TendMethod
from mlsup_jax.nn import cvae as cvae_lib
from mlsup_jax.nn.vae import GaussianLatent

torch = pytest.importorskip("torch", reason="PyTorch is an optional benchmark dependency")

# XLA's cheap CPU backend passes: the same arithmetic, compiled in about half the time.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
SMOKE_SIZE = 32


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
  """One intra-op thread: on a busy 2-core host, PyTorch's spinning OpenMP team is 10× slower."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


# ------------------------------------------------------------------ weight port (test-only)


def _tensor(x, transpose=None):
  x = np.asarray(x, np.float32)
  return torch.from_numpy(np.array(x if transpose is None else x.transpose(transpose), order="C"))


def _set(param, value):
  assert tuple(param.shape) == tuple(value.shape), (param.shape, value.shape)
  param.data = value


def _conv(module, p):
  """Flax conv `[kh, kw, in, out]` → PyTorch `[out, in, kh, kw]`."""
  _set(module.weight, _tensor(p["kernel"], (3, 2, 0, 1)))
  if "bias" in p:
    _set(module.bias, _tensor(p["bias"]))


def _tconv(module, p):
  """Flax `ConvTranspose` `[kh, kw, in, out]` → PyTorch `ConvTranspose2d` `[in, out, kh, kw]`.

  Spatially flipped: without `transpose_kernel`, Flax's is a plain conv of the dilated input,
  PyTorch's the gradient of a conv (`test_transposed_conv_port_is_the_same_function`).
  """
  kernel = np.flip(np.asarray(p["kernel"]), axis=(0, 1))
  _set(module.weight, _tensor(kernel, (2, 3, 0, 1)))
  if "bias" in p:
    _set(module.bias, _tensor(p["bias"]))


def _bn(module, p, s):
  _set(module.weight, _tensor(p["scale"]))
  _set(module.bias, _tensor(p["bias"]))
  module.running_mean.data, module.running_var.data = _tensor(s["mean"]), _tensor(s["var"])


def _block(seq, p, s, transpose=False):
  """`ConvBlock` params (`conv`, `norm`) → `Sequential(conv, [BatchNorm,] activation)`."""
  (_tconv if transpose else _conv)(seq[0], p["conv"])
  if "norm" in p:
    _bn(seq[1], p["norm"], s["norm"])


def _stack(seq, p, s, transpose=False):
  """`ConvStack` / `ConvEncoder` / `ConvDecoder` params (`block_i`, optional `output`)."""
  for i, module in enumerate(seq):
    if f"block_{i}" in p:
      _block(module, p[f"block_{i}"], s.get(f"block_{i}", {}), transpose)
    else:
      (_tconv if transpose else _conv)(module, p["output"])


def _dense(module, p, in_map=None, out_map=None):
  """Flax Dense `[in, out]` → Linear `[out, in]`.

  `in_map` / `out_map` = `(c, h, w)` when the input is a flattened map / the output is reshaped
  to one: Flax flattens `[h, w, c]`, PyTorch `[c, h, w]`, so those rows / columns are permuted.
  """
  kernel, bias = np.asarray(p["kernel"]), p.get("bias")
  if in_map is not None:
    c, h, w = in_map
    kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
  if out_map is not None:
    c, h, w = out_map
    kernel = kernel.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(-1, c * h * w)
    bias = np.asarray(bias).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
  _set(module.weight, _tensor(kernel.T))
  if bias is not None:
    _set(module.bias, _tensor(bias))


def load_autoencoder(model, variables):
  """Copies a Flax `AutoEncoder`'s variables into the PyTorch one."""
  p, s = variables["params"], variables.get("batch_stats", {})
  _stack(model.encoder, p["encoder"], s.get("encoder", {}))
  _stack(model.decoder, p["decoder"], s.get("decoder", {}), transpose=True)


def load_classifier(model, variables, head_map):
  """`TendClassifier`; `head_map` = `(c, h, w)` of the head conv's output."""
  p, s = variables["params"], variables.get("batch_stats", {})
  _stack(model.encoder, p["encoder"], s.get("encoder", {}))
  _block(model.head, p["head"], s.get("head", {}))
  _dense(model.features, p["features"], in_map=head_map)
  _dense(model.logit, p["logit"])


def load_cascade_vae(model, variables, e_map, e2_map, he_map):
  """`CascadeVAE`; `(c, h, w)` of e (E12's output), E2's output and h_e."""
  p, s = variables["params"], variables["batch_stats"]
  for name in ("e11", "e12"):
    _stack(getattr(model, name), p[name], s[name])
  for name in ("d11", "d12", "d2"):
    _stack(getattr(model, name), p[name], s[name], transpose=True)
  _block(model.e2, p["e2"], s["e2"])
  for i, in_map in ((1, e_map), (2, e2_map)):
    _dense(getattr(model, f"mu{i}"), p[f"latent{i}"]["mu"], in_map=in_map)
    _dense(getattr(model, f"logvar{i}"), p[f"latent{i}"]["logvar"], in_map=in_map)
  _dense(model.d1_input.dense, p["d1_input"]["dense"], out_map=e_map)
  _dense(model.d2_input.dense, p["d2_input"]["dense"], out_map=he_map)


def load_discriminator(model, variables, top_map):
  """`Discriminator`; `top_map` = `(c, h, w)` of its conv trunk's output."""
  p, s = variables["params"], variables["batch_stats"]
  _stack(model.encoder, p["encoder"], s["encoder"])
  _dense(model.hidden, p["hidden"], in_map=top_map)
  _bn(model.hidden_norm, p["hidden_norm"], s["hidden_norm"])
  _dense(model.logit, p["logit"])


# ------------------------------------------------------------------------------ helpers


def _random_variables(init, rng_seed=0):
  """Random Flax variables with `init`'s shapes (drawn with NumPy: no init to compile).

  BatchNorm scales `1 ± 0.3`, biases and statistics random, so that every parameter matters.
  """
  rng = np.random.default_rng(rng_seed)
  shapes = jax.eval_shape(init)

  def draw(path, leaf):
    name, shape = jax.tree_util.keystr(path[-1:]), leaf.shape
    if "kernel" in name:
      return rng.normal(0.0, int(np.prod(shape[:-1])) ** -0.5, shape)
    if "scale" in name:
      return 1.0 + 0.3 * rng.normal(size=shape)
    if "var" in name:
      return 0.5 + 0.5 * np.abs(rng.normal(size=shape))
    return 0.3 * rng.normal(size=shape)

  return jax.tree_util.tree_map_with_path(lambda p, v: draw(p, v).astype(np.float32), shapes)


def _images(batch=2, size=SMOKE_SIZE, seed=1):
  return np.random.default_rng(seed).uniform(size=(batch, size, size, 1)).astype(np.float32)


def _nchw(x):
  return _tensor(x, (0, 3, 1, 2))


def _nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def _jitted(fn, *args):
  """`fn(*args)` compiled with `FAST_COMPILE`, as NumPy."""
  return jax.device_get(jax.jit(fn).lower(*args).compile(FAST_COMPILE)(*args))


def _close(got, expected, tol=1e-4):
  """Agreement to `tol`, relative to the array's scale."""
  expected = np.asarray(expected)
  scale = max(1.0, float(np.max(np.abs(expected))))
  np.testing.assert_allclose(np.asarray(got), expected, rtol=tol, atol=tol * scale)


def _apply(module, variables, x, train, **kwargs):
  """Flax outputs in eval mode, or train mode (batch statistics) without the stat updates."""
  if not train:
    return module.apply(variables, x, train=False, **kwargs)
  return module.apply(variables, x, train=True, mutable=["batch_stats"], **kwargs)[0]


def _param_count(module, x, rngs=None):
  rngs = rngs or jax.random.key(0)
  variables = jax.eval_shape(lambda: module.init(rngs, x, train=False))
  return sum(v.size for v in jax.tree.leaves(variables["params"]))


# ------------------------------------------------------------------------ parameter counts


@pytest.mark.parametrize(
  "arg,size,overrides",
  [
    ("smoke", 32, {}),
    (None, 64, {}),
    ("smoke", 32, {"use_norm": False, "head_norm": True, "freeze_encoder": True}),
  ],
)
def test_tend_parameter_counts_match_the_jax_models(arg, size, overrides):
  config = tend_config.get_config(arg)
  with config.unlocked():
    config.model.update(overrides)
  method, x, shape = TendMethod(config), jnp.zeros((1, size, size, 1)), (size, size, 1)
  autoencoder = torch_anomaly.build_tend_autoencoder(config, shape)
  classifier = torch_anomaly.build_tend_classifier(config, shape)
  assert torch_anomaly.count_parameters(autoencoder) == _param_count(method.autoencoder, x)
  assert torch_anomaly.count_parameters(classifier) == _param_count(method.classifier, x)


@pytest.mark.parametrize(
  "arg,size,overrides",
  [("smoke", 32, {}), (None, 64, {}), ("smoke", 32, {"branch_encoder": "fc"})],
)
def test_cvad_parameter_counts_match_the_jax_models(arg, size, overrides):
  config = cvad_config.get_config(arg)
  with config.unlocked():
    config.model.update(overrides)
  method, x, shape = CvadMethod(config), jnp.zeros((1, size, size, 1)), (size, size, 1)
  rngs = {"params": jax.random.key(0), "sample": jax.random.key(1)}
  generator = torch_anomaly.build_cascade_vae(config, shape)
  discriminator = torch_anomaly.build_discriminator(config, shape)
  assert torch_anomaly.count_parameters(generator) == _param_count(method.generator, x, rngs)
  assert torch_anomaly.count_parameters(discriminator) == _param_count(method.discriminator, x)


# --------------------------------------------------------------- outputs with ported weights


def test_transposed_conv_port_is_the_same_function():
  """A Flax `ConvTranspose(4, s2, padding 2)` = PyTorch `ConvTranspose2d(4, 2, 1)`, flipped."""
  import flax.linen as nn

  layer = nn.ConvTranspose(3, (4, 4), (2, 2), padding=((2, 2), (2, 2)))
  x = np.random.default_rng(0).normal(size=(2, 5, 6, 4)).astype(np.float32)
  variables = _random_variables(lambda: layer.init(jax.random.key(0), x))
  expected = _jitted(lambda v: layer.apply(v, x), variables)
  module = torch.nn.ConvTranspose2d(4, 3, 4, 2, 1)
  _tconv(module, variables["params"])
  with torch.no_grad():
    _close(_nhwc(module(_nchw(x))), expected)


@pytest.mark.parametrize("train", [False, True])
def test_tend_autoencoder_matches_the_jax_network(train):
  config = tend_config.get_config("smoke")
  jax_model, x = TendMethod(config).autoencoder, _images()
  variables = _random_variables(lambda: jax_model.init(jax.random.key(0), x, train=False))
  expected = _jitted(lambda v: _apply(jax_model, v, x, train), variables)
  model = torch_anomaly.build_tend_autoencoder(config, x.shape[1:])
  load_autoencoder(model, variables)
  with torch.no_grad():
    got = model.train(train)(_nchw(x))
  for key in ("reconstruction", "reconstruction_logits", "latent"):
    _close(_nhwc(got[key]), expected[key])


@pytest.mark.parametrize("train,freeze", [(False, False), (True, False), (True, True)])
def test_tend_classifier_matches_the_jax_network(train, freeze):
  config = tend_config.get_config("smoke")
  with config.unlocked():
    config.model.freeze_encoder = freeze
  jax_model, x = TendMethod(config).classifier, _images(4)
  variables = _random_variables(lambda: jax_model.init(jax.random.key(0), x, train=False))
  expected = _jitted(lambda v: _apply(jax_model, v, x, train), variables)
  model = torch_anomaly.build_tend_classifier(config, x.shape[1:])
  m, side = config.model, SMOKE_SIZE // 2 ** (config.model.depth + 1)
  load_classifier(model, variables, (2 * m.base_width * 2 ** (m.depth - 1), side, side))
  with torch.no_grad():
    got = model.train(train)(_nchw(x))
  _close(got["features"].numpy(), expected["features"])
  _close(got["logit"].numpy(), expected["logit"])


@pytest.mark.parametrize("train", [False, True])
def test_cascade_vae_matches_the_jax_network(train, monkeypatch):
  """With the JAX pass's sampling noise ε and perturbation δ fed to the PyTorch network."""
  config = cvad_config.get_config("smoke")
  with config.unlocked():
    config.model.perturb_scale = 1.0  # A perturbation large enough to show in the outputs.
  jax_model, x = CvadMethod(config).generator, _images(3)
  rngs = {"params": jax.random.key(0), "sample": jax.random.key(1)}
  variables = _random_variables(lambda: jax_model.init(rngs, x, train=False))
  recorded = []  # The perturbed latents, traced inside the jitted function below.
  perturb_latent = cvae_lib.perturb_latent

  def recording(mu, scale, rng):
    recorded.append(perturb_latent(mu, scale, rng))
    return recorded[-1]

  monkeypatch.setattr(cvae_lib, "perturb_latent", recording)

  def forward(v):
    recorded.clear()
    outputs, state = jax_model.apply(
      v,
      x,
      train=train,
      perturb=True,
      rngs={"sample": jax.random.key(2)},
      mutable=["batch_stats", "intermediates"],
      capture_intermediates=lambda module, _: isinstance(module, GaussianLatent),
    )
    latents = {k: state["intermediates"][f"latent{k}"]["__call__"][0] for k in (1, 2)}
    return outputs, latents, tuple(recorded)

  expected, latents, perturbed = _jitted(forward, variables)
  noise = {}
  for k in (1, 2):
    z, mu, logvar = (np.asarray(a, np.float64) for a in latents[k])
    noise[f"eps{k}"] = _tensor((z - mu) / np.exp(0.5 * logvar))
    sigma = config.model.perturb_scale * mu.std(axis=-1, keepdims=True)
    noise[f"delta{k}"] = _tensor((np.asarray(perturbed[k - 1], np.float64) - mu) / sigma)

  model = torch_anomaly.build_cascade_vae(config, x.shape[1:])
  m, s = config.model, SMOKE_SIZE
  c_he = m.base_width * 2 ** (m.e11_depth - 1)
  c_e = m.base_width * 2 ** (m.e11_depth + m.e12_depth - 1)
  he_side, e_side = s >> m.e11_depth, s >> (m.e11_depth + m.e12_depth)
  load_cascade_vae(
    model,
    variables,
    e_map=(c_e, e_side, e_side),
    e2_map=(2 * c_he, he_side // 2, he_side // 2),
    he_map=(c_he, he_side, he_side),
  )
  with torch.no_grad():
    got = model.train(train)(_nchw(x), perturb=True, noise=noise)
  for key in ("reconstruction", "reconstruction_primary", "reconstruction_branch", "perturbed"):
    _close(_nhwc(got[key]), expected[key])
  for key in ("mu1", "logvar1", "mu2", "logvar2"):
    _close(got[key].numpy(), expected[key])


@pytest.mark.parametrize("train", [False, True])
def test_discriminator_matches_the_jax_network(train):
  config = cvad_config.get_config("smoke")
  jax_model, x = CvadMethod(config).discriminator, _images(4)
  variables = _random_variables(lambda: jax_model.init(jax.random.key(0), x, train=False))
  expected = _jitted(lambda v: _apply(jax_model, v, x, train), variables)
  model = torch_anomaly.build_discriminator(config, x.shape[1:])
  m = config.model
  depth = m.e11_depth + m.e12_depth
  side = SMOKE_SIZE >> depth
  load_discriminator(model, variables, (m.base_width * 2 ** (depth - 1), side, side))
  with torch.no_grad():
    _close(model.train(train)(_nchw(x)).numpy(), expected)


# ---------------------------------------------------------------------------------- losses


def _random_outputs(rng, b=3, k=6, size=8):
  images = rng.uniform(size=(b, size, size, 2)).astype(np.float32)
  recon = {
    key: rng.uniform(size=images.shape).astype(np.float32)
    for key in ("reconstruction", "reconstruction_primary", "reconstruction_branch")
  }
  latents = {
    f"{name}{i}": rng.normal(size=(b, k * i)).astype(np.float32)
    for name in ("mu", "logvar")
    for i in (1, 2)
  }
  return images, {**recon, **latents}


def _torch_outputs(outputs):
  return {k: _nchw(v) if v.ndim == 4 else _tensor(v) for k, v in outputs.items()}


@pytest.mark.parametrize("normalisation", ["pixels", "batch"])
@pytest.mark.parametrize("target", ["combined", "separate"])
def test_cvae_and_reconstruction_losses_match(normalisation, target):
  images, outputs = _random_outputs(np.random.default_rng(0))
  hparams = {"alpha1": 0.7, "alpha2": 1.3, "beta": 0.5}
  hparams.update(kl_normalisation=normalisation, reconstruction_target=target)
  expected, _ = anomaly.cvae_loss(outputs=outputs, batch={"image": images}, **hparams)
  got = torch_anomaly.cvae(_torch_outputs(outputs), {"image": _nchw(images)}, **hparams)
  np.testing.assert_allclose(got.item(), float(expected), rtol=1e-5)
  expected, _ = anomaly.reconstruction_mse(outputs=outputs, batch={"image": images})
  got = torch_anomaly.reconstruction_mse(_torch_outputs(outputs), {"image": _nchw(images)})
  np.testing.assert_allclose(got.item(), float(expected), rtol=1e-5)


@pytest.mark.parametrize("labels", [[0, 1, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0]])
def test_tend_classifier_losses_match(labels):
  """BCE + margin (the config's `loss.classifier`), an empty OOD group included."""
  rng = np.random.default_rng(1)
  config = tend_config.get_config("smoke")
  outputs = {
    "features": 5 * rng.normal(size=(6, 16)).astype(np.float32),
    "logit": 3 * rng.normal(size=6).astype(np.float32),
    "centre": rng.normal(size=16).astype(np.float32),
  }
  with config.unlocked():
    config.model.margin = 80.0  # Between the distances, so that both relu branches occur.
  batch = {"label": np.asarray(labels, np.int32)}
  expected, _ = losses.weighted_sum(config.loss.classifier, outputs=outputs, batch=batch)
  torch_outputs = {k: _tensor(v) for k, v in outputs.items()}
  torch_batch = {"label": torch.tensor(labels)}
  got = torch_anomaly.weighted_sum(config.loss.classifier, torch_outputs, torch_batch)
  np.testing.assert_allclose(got.item(), float(expected), rtol=1e-5)


def test_discriminator_loss_matches():
  rng = np.random.default_rng(2)
  outputs = {"real_logit": 3 * rng.normal(size=4), "fake_logit": 3 * rng.normal(size=8)}
  outputs = {k: v.astype(np.float32) for k, v in outputs.items()}
  expected, _ = anomaly.discriminator_bce(outputs=outputs, batch={})
  got = torch_anomaly.discriminator_bce({k: _tensor(v) for k, v in outputs.items()}, {})
  np.testing.assert_allclose(got.item(), float(expected), rtol=1e-5)


# ------------------------------------------------------------ benchmarks and stage selection


@pytest.mark.parametrize(
  "method,stage,build",
  [
    ("tend", "autoencoder", torch_anomaly.build_tend_autoencoder),
    ("tend", "margin", torch_anomaly.build_tend_classifier),
    ("cvad", "cvae", torch_anomaly.build_cascade_vae),
    ("cvad", "discriminator", torch_anomaly.build_discriminator),
  ],
)
def test_torch_leg_reports(method, stage, build):
  """`benchmarks.run.torch_leg` dispatches `<method>/<stage>` to these benchmarks."""
  config = {"tend": tend_config, "cvad": cvad_config}[method].get_config("smoke")
  shape = [2, SMOKE_SIZE, SMOKE_SIZE, 1]
  jit_report = {"batch_size": 2, "stage": stage, "input_shapes": {"image": shape}}
  rep = run.torch_leg(config, jit_report, warmup=0, iters=1)
  assert rep["leg"] == "torch" and rep["batch_size"] == 2 and rep["iters"] == 1
  assert rep["step_ms_min"] > 0 and rep["step_ms_median"] > 0 and rep["examples_per_s"] > 0
  assert rep["flops_per_step"] is None and rep["memory"] == {"peak_bytes": None}
  assert rep["parameters"] == torch_anomaly.count_parameters(build(config, shape[1:]))


def test_torch_leg_skips_stages_without_a_torch_step():
  config = tend_config.get_config("smoke")
  jit_report = {"batch_size": 2, "stage": "centre", "input_shapes": {"image": [2, 32, 32, 1]}}
  rep = run.torch_leg(config, jit_report, warmup=0, iters=1)
  assert rep == {"leg": "torch", "skipped": "no PyTorch implementation of 'tend/centre'"}


class _ToySetup:
  """What `harness.stage_state` reads of a `RunSetup`, for a three-stage toy method.

  `fit` adds 1 to `w`; `collect` sums `w · x` and counts examples; `use` starts by fixing
  `mean = sum / count` (as TEND's centre: 0 / 0 unless `collect` ran a step).
  """

  def __init__(self):
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("data",))
    self.replicated = NamedSharding(mesh, P())
    self.train_rng = jax.random.key(0)
    none = optax.set_to_zero()

    def fit(state, batch, rng):
      return state.replace(step=state.step + 1, params={"w": state.params["w"] + 1}), {}

    def collect(state, batch, rng):
      extra = dict(state.extra)
      extra["sum"] = extra["sum"] + state.params["w"] * jnp.sum(batch["x"])
      extra["count"] = extra["count"] + batch["x"].shape[0]
      return state.replace(step=state.step + 1, extra=extra), {}

    def fix_mean(state):
      return state.replace(extra={**state.extra, "mean": state.extra["sum"] / state.extra["count"]})

    self.stages = [
      Stage("fit", 1, fit, none),
      Stage("collect", 1, collect, none),
      Stage("use", 1, fit, none, prepare=fix_mean),
    ]

  def create_state(self, index):
    assert index == 0
    zero = jnp.zeros((), jnp.float32)
    extra = {"sum": zero, "count": zero, "mean": zero}
    return TrainState.create(params={"w": zero}, optimizer=optax.set_to_zero(), extra=extra)

  def state_shardings(self, index):
    return None, self.replicated

  def compile_step(self, stage, shardings):
    return jax.jit(stage.train_step, out_shardings=(shardings, self.replicated))


def test_stage_state_runs_one_step_of_each_earlier_stage():
  setup, batch = _ToySetup(), {"x": jnp.full((4,), 0.5)}
  state = harness.stage_state(setup, 0, batch)
  assert int(state.step) == 0 and float(state.params["w"]) == 0
  state = harness.stage_state(setup, 1, batch)  # `fit` ran; `collect` has not.
  assert int(state.step) == 1 and float(state.params["w"]) == 1 and float(state.extra["sum"]) == 0
  state = harness.stage_state(setup, 2, batch)  # `use`'s prepare saw a real sum and count.
  assert int(state.step) == 2 and float(state.extra["count"]) == 4
  assert float(state.extra["mean"]) == pytest.approx(0.5)
  assert harness.stage_index(setup, "collect") == 1 and harness.stage_index(setup, None) == 0
  with pytest.raises(ValueError, match="stages are"):
    harness.stage_index(setup, "centre")


@pytest.mark.slow  # Compiles TEND's init and four train steps: ~1 min on a busy 2-core CPU.
def test_tend_margin_benchmark_starts_from_a_real_centre():
  """One AE, warm-up and centre step run before the margin stage: its centre is not 0 / 0."""
  config = tend_config.get_config("smoke")
  setup = RunSetup(config, jax.devices()[:1])
  batch = mesh_lib.global_batch(setup.example_local, setup.mesh)
  state = jax.device_get(harness.stage_state(setup, harness.stage_index(setup, "margin"), batch))
  assert int(state.step) == 3 and float(state.extra["centre_count"]) == batch["image"].shape[0]
  centre = np.asarray(state.extra["centre"])
  assert np.all(np.isfinite(centre)) and np.all(np.abs(centre) >= 0.1 - 1e-6)
  devices = list(setup.mesh.devices.flat)
  rep = harness.benchmark_config(config, warmup=0, iters=1, devices=devices)
  assert rep["stage"] == "autoencoder"  # The default: the first stage.
  rep = harness.benchmark_config(config, warmup=0, iters=1, devices=devices, stage="margin")
  assert rep["stage"] == "margin" and "'margin'" in rep["note"]
  assert rep["step_ms_median"] > 0 and rep["flops_per_step"] > 0
  assert rep["input_shapes"]["distorted"] == [8, SMOKE_SIZE, SMOKE_SIZE, 1]


@pytest.mark.parametrize(
  "name", ["tend/autoencoder", "tend/margin", "cvad/cvae", "cvad/discriminator"]
)
def test_benchmarks_skip_without_torch(name, monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError.
  config = {"tend": tend_config, "cvad": cvad_config}[name.split("/")[0]].get_config("smoke")
  rep = run.TORCH_BENCHMARKS[name](config, 2, 0, 1)
  assert rep == {"leg": "torch", "skipped": "torch not installed"}
