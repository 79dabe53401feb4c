"""The independent PyTorch MCPM / MW-Net meta step of the `mcpm` torch leg: port, step, benchmark.

The Flax variables of the smoke-size U-Net and meta networks are ported into the PyTorch ones;
one train step must then give the same weighted loss, meta loss, meta-gradient (the
second-order gradient through the virtual SGD step) and updated parameters as
`McpmMethod.train_step`. Also the harness's handling of MCPM's nested `meta` batch. The PyTorch
tests are skipped when PyTorch (an optional benchmark dependency, `pip install -e .[bench]`) is
missing.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import harness, torch_mcpm
from configs import mcpm as mcpm_config
from mlsup_jax.methods.mcpm import McpmMethod

try:
  import torch
except ImportError:
  torch = None

needs_torch = pytest.mark.skipif(
  torch is None, reason="PyTorch is an optional benchmark dependency"
)

# float32 agreement of XLA and PyTorch (different conv / reduction orders), relative to each
# array's largest magnitude: the meta-gradient is a second-order quantity through InstanceNorm.
# Measured: ≤ 2e-6 for the losses, the meta-gradient and the updated parameters.
TOL = 1e-4
# XLA's cheap CPU backend passes: the same arithmetic, compiled in about half the time.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
BATCH, SIZE = 2, 32


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
  """One intra-op thread: on a busy 2-core host, PyTorch's spinning OpenMP team is 10× slower."""
  if torch is None:
    yield
    return
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


# ----------------------------------------------- Flax trees ↔ PyTorch names (test-only port)


def _conv(kernel):
  """Flax conv `[*k, in, out]` → PyTorch `[out, in, *k]`."""
  kernel = np.asarray(kernel)
  n = kernel.ndim
  return kernel.transpose(n - 1, n - 2, *range(n - 2))


def _conv_transpose(kernel):
  """Flax `ConvTranspose` `[*k, in, out]` → PyTorch `[in, out, *k]`, spatially flipped."""
  kernel = np.asarray(kernel)
  n = kernel.ndim
  return np.flip(kernel, axis=tuple(range(n - 2))).transpose(n - 2, n - 1, *range(n - 2))


def unet_named(p: dict, levels: int) -> dict[str, np.ndarray]:
  """Flax `UNet` params (or a gradient of them) → `{torch_kmax_models.UNet name: array}`."""
  b, out = p["UNetBackbone_0"], {}

  def block(prefix, cp):
    out[f"{prefix}.conv.weight"] = _conv(cp["Conv_0"]["kernel"])
    out[f"{prefix}.norm.weight"] = np.asarray(cp["InstanceNorm_0"]["scale"])
    out[f"{prefix}.norm.bias"] = np.asarray(cp["InstanceNorm_0"]["bias"])

  for i in range(2 * levels):
    block(f"backbone.encoder.{i // 2}.{i % 2}", b[f"ConvNormAct_{i}"])
  for j in range(levels - 1):
    out[f"backbone.up.{j}.weight"] = _conv_transpose(b[f"ConvTranspose_{j}"]["kernel"])
    for t in range(2):
      block(f"backbone.decoder.{j}.{t}", b[f"ConvNormAct_{2 * levels + 2 * j + t}"])
  out["head.weight"] = _conv(p["Conv_0"]["kernel"])
  out["head.bias"] = np.asarray(p["Conv_0"]["bias"])
  return out


def meta_named(p: dict, weighting: str) -> dict[str, np.ndarray]:
  """Flax `MetaMaskNet` / `MetaWeightNet` params → `{torch_mcpm_models name: array}`."""
  out = {}
  if weighting == "pixel":  # Conv_i → net.{2i} (the ReLUs sit at the odd indices).
    for i in range(len(p)):
      out[f"net.{2 * i}.weight"] = _conv(p[f"Conv_{i}"]["kernel"])
      out[f"net.{2 * i}.bias"] = np.asarray(p[f"Conv_{i}"]["bias"])
  else:  # Dense `[in, out]` → Linear `[out, in]`.
    for i in range(2):
      out[f"net.{2 * i}.weight"] = np.asarray(p[f"Dense_{i}"]["kernel"]).T
      out[f"net.{2 * i}.bias"] = np.asarray(p[f"Dense_{i}"]["bias"])
  return out


def _load(module, named: dict) -> None:
  state = {k: torch.from_numpy(np.array(v, np.float32, order="C")) for k, v in named.items()}
  module.load_state_dict(state, strict=True)


def _assert_named_close(got: dict, expected: dict, tol: float = TOL) -> None:
  assert set(got) == set(expected)
  for name, value in expected.items():
    value = np.asarray(value)
    scale = max(float(np.max(np.abs(value))), 1e-12)
    np.testing.assert_allclose(
      got[name].detach().numpy(), value, rtol=tol, atol=tol * scale, err_msg=name
    )


def _batch(config, seed=0):
  """A random channels-last JAX batch with a meta sub-batch (the pipeline's structure)."""
  rng = np.random.default_rng(seed)
  k = config.model.num_classes

  def part():
    return {
      "image": rng.normal(size=(BATCH, SIZE, SIZE, 1)).astype(np.float32),
      "label": rng.integers(0, k, (BATCH, SIZE, SIZE)).astype(np.int32),
    }

  return {**part(), "meta": part()}


def _torch_batch(batch: dict) -> dict:
  def convert(part):
    return {
      "image": torch.from_numpy(np.ascontiguousarray(part["image"].transpose(0, 3, 1, 2))),
      "label": torch.from_numpy(part["label"].astype(np.int64)),
    }

  out = convert(batch)
  if "meta" in batch:
    out["meta"] = convert(batch["meta"])
  return out


def _jitted(fn, *args):
  """`fn(*args)` compiled with `FAST_COMPILE`, as NumPy."""
  return jax.device_get(jax.jit(fn).lower(*args).compile(FAST_COMPILE)(*args))


def _ported(config, state):
  """The PyTorch U-Net and meta network holding `state`'s parameters, and their `McpmStep`."""
  levels = len(config.model.features)
  model = torch_mcpm.build_unet(config, 1)
  _load(model, unet_named(state.params, levels))
  meta_model = torch_mcpm.build_meta_net(config, 1)
  if meta_model is not None:
    _load(meta_model, meta_named(state.extra["meta_params"], config.meta.weighting))
  return torch_mcpm.McpmStep(config, model, meta_model)


# -------------------------------------------------------------------------------------- tests


def test_input_shapes_flattens_nested_batches():
  """The harness records MCPM's nested meta batch (the torch leg reads `image` from it)."""
  batch = {"image": np.zeros((2, 4, 4, 1)), "meta": {"image": np.zeros((2, 4, 4, 1))}}
  assert harness.input_shapes(batch) == {"image": [2, 4, 4, 1], "meta/image": [2, 4, 4, 1]}


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_learning_rate_is_the_optax_schedule(schedule):
  from mlsup_jax.core.optimizers import learning_rate_schedule

  config = mcpm_config.get_config("smoke").optimizer.copy_and_resolve_references()
  config.unlock()
  config.schedule, config.warmup_steps = schedule, 2
  optax_schedule = learning_rate_schedule(config, 10)
  for step in range(12):
    got = torch_mcpm.learning_rate(config, 10, step)
    # optax evaluates the schedule in float32.
    assert got == pytest.approx(float(optax_schedule(step)), rel=1e-5, abs=1e-9)


@needs_torch
@pytest.mark.parametrize("variant", ["mcpm", "mwnet", "unet"])
def test_parameter_counts_match_the_jax_networks(variant):
  config = mcpm_config.get_config(f"small,variant={variant}")
  method = McpmMethod(config)
  state = jax.eval_shape(lambda: method.init(jax.random.key(0), _batch(config)))
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  assert torch_mcpm.count_parameters(torch_mcpm.build_unet(config, 1)) == count(state.params)
  meta_model = torch_mcpm.build_meta_net(config, 1)
  if meta_model is None:
    assert state.extra == {}
  else:
    assert torch_mcpm.count_parameters(meta_model) == count(state.extra["meta_params"])


@needs_torch
@pytest.mark.parametrize("variant", ["mcpm", "mwnet"])
def test_meta_gradient_matches_the_jax_method(variant):
  """Meta loss and ∇_Θ of it through the virtual step, from ported weights."""
  config = mcpm_config.get_config(f"smoke,variant={variant}")
  method = McpmMethod(config)
  batch = _batch(config)
  state = method.init(jax.random.key(0), batch)
  inner_lr = jnp.asarray(0.05, jnp.float32)
  rng = jax.random.key(1)  # Dropout is off: the rng does not change the result.
  loss, _, grads = _jitted(
    method.meta_gradient,
    state.extra["meta_params"],
    state.params,
    state.model_state,
    batch,
    inner_lr,
    rng,
  )
  step = _ported(config, state)
  detached = lambda module: {k: v.detach() for k, v in module.named_parameters()}
  got_loss, got_grads = step.meta_gradient(
    detached(step.meta_model), detached(step.model), _torch_batch(batch), 0.05
  )
  np.testing.assert_allclose(got_loss.item(), float(loss), rtol=TOL)
  _assert_named_close(got_grads, meta_named(grads, config.meta.weighting))
  assert max(float(np.max(np.abs(g))) for g in jax.tree.leaves(grads)) > 0  # Not vacuous.


@needs_torch
@pytest.mark.parametrize("variant", ["mcpm", "mwnet", "unet"])
def test_train_step_matches_the_jax_method(variant):
  """One full step (meta update, then the real SGD step): losses and every updated parameter."""
  config = mcpm_config.get_config(f"smoke,variant={variant}")
  method = McpmMethod(config)
  batch = _batch(config)
  if variant == "unet":
    del batch["meta"]
  state = method.init(jax.random.key(0), batch)
  step = _ported(config, state)
  new_state, metrics = _jitted(method.train_step, state, batch, jax.random.key(1))
  got = step.step(_torch_batch(batch))
  np.testing.assert_allclose(got["loss"], float(metrics["loss"]), rtol=TOL)
  np.testing.assert_allclose(got["weight_mean"], float(metrics["weight_mean"]), rtol=TOL)
  levels = len(config.model.features)
  _assert_named_close(dict(step.model.named_parameters()), unet_named(new_state.params, levels))
  if variant != "unet":
    np.testing.assert_allclose(got["meta_loss"], float(metrics["meta_loss"]), rtol=TOL)
    _assert_named_close(
      dict(step.meta_model.named_parameters()),
      meta_named(new_state.extra["meta_params"], config.meta.weighting),
    )
  # The step moved the parameters, so the comparison above is not of the initial values.
  moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), new_state.params, state.params)
  assert max(jax.tree.leaves(moved)) > 0


@needs_torch
def test_meta_every_skips_the_meta_update():
  config = mcpm_config.get_config("smoke").copy_and_resolve_references()
  config.unlock()
  config.meta.meta_every = 2
  method = McpmMethod(config)
  batch = _batch(config)
  step = _ported(config, method.init(jax.random.key(0), batch))
  data = _torch_batch(batch)
  assert "meta_loss" in step.step(data)  # Step 0: a meta update.
  before = {k: v.detach().clone() for k, v in step.meta_model.named_parameters()}
  assert "meta_loss" not in step.step(data)  # Step 1: none.
  for name, value in step.meta_model.named_parameters():
    torch.testing.assert_close(value.detach(), before[name], rtol=0, atol=0)


@needs_torch
@pytest.mark.parametrize("variant", ["mcpm", "unet"])
def test_torch_leg_reports(variant):
  """`benchmarks.run.torch_leg` dispatches MCPM configs (any variant) to this benchmark."""
  from benchmarks import run

  config = mcpm_config.get_config(f"smoke,variant={variant}")
  jit_report = {
    "stage": "train",
    "batch_size": 2,
    "input_shapes": {"image": [2, 16, 16, 1], "label": [2, 16, 16], "meta/image": [2, 16, 16, 1]},
  }
  rep = run.torch_leg(config, jit_report, warmup=0, iters=1)
  assert rep["leg"] == "torch" and rep["batch_size"] == 2 and rep["iters"] == 1
  assert rep["step_ms_min"] > 0 and rep["step_ms_median"] > 0 and rep["examples_per_s"] > 0
  assert rep["parameters"] == torch_mcpm.count_parameters(torch_mcpm.build_unet(config, 1))
  assert (rep["meta_parameters"] > 0) == (variant == "mcpm")


def test_benchmark_skips_without_torch(monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError.
  config = mcpm_config.get_config("smoke")
  assert torch_mcpm.benchmark_torch_mcpm(config, 2, 0, 1) == {
    "leg": "torch",
    "skipped": "torch not installed",
  }


def test_importing_the_leg_needs_no_torch():
  """`benchmarks.run` imports `torch_mcpm` unconditionally: no module-level `import torch`."""
  for module in (torch_mcpm, sys.modules["benchmarks.torch_mcpm_models"]):
    source = open(module.__file__).read()
    assert "\nimport torch" not in source and "\nfrom torch" not in source
