"""Tests of mlsup_jax.core.optimizers and of the config files (configs/sections/common.py …)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import scunet as scunet_config
from configs.sections import common
from mlsup_jax import losses
from mlsup_jax.core.optimizers import build_optimizer, learning_rate_schedule
from mlsup_jax.data.augmentation.transforms import TRANSFORMS
from mlsup_jax.data.sources import DATASETS
from mlsup_jax.losses import LOSSES
from mlsup_jax.methods import METHODS
from mlsup_jax.nn import MODELS

TARGET = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
START = np.array([0.3, 0.4, -1.0, 2.0], np.float32)


def _grad(params):
  """Gradient of the quadratic `0.5 ‖p − target‖²` (same formula in numpy and JAX)."""
  return params - TARGET


def _run(optimizer, steps, params=START):
  params = {"w": jnp.asarray(params)}
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state):
    grads = jax.tree.map(_grad, params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  trajectory = []
  for _ in range(steps):
    params, opt_state = step(params, opt_state)
    trajectory.append(np.asarray(params["w"]))
  return trajectory


def _config(name, **fields):
  config = common.optimizer(name, learning_rate=fields.pop("learning_rate", 0.1))
  config.update(fields)
  return config


def _np_adam(steps, lr, b1, b2, eps, *, decoupled_wd=0.0, coupled_wd=0.0):
  p = START.astype(np.float64)
  m = np.zeros_like(p)
  v = np.zeros_like(p)
  out = []
  for t in range(1, steps + 1):
    g = p - TARGET + coupled_wd * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g**2
    update = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) + decoupled_wd * p
    p = p - lr * update
    out.append(p.copy())
  return out


def _np_sgd(steps, lr, momentum, wd, nesterov=False):
  """PyTorch SGD (dampening 0) with L2 weight decay."""
  p = START.astype(np.float64)
  buf = np.zeros_like(p)
  out = []
  for _ in range(steps):
    g = p - TARGET + wd * p
    buf = momentum * buf + g
    p = p - lr * ((g + momentum * buf) if nesterov else buf)
    out.append(p.copy())
  return out


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_build_optimizer_steps_parameters_towards_the_minimum(name):
  trajectory = _run(build_optimizer(_config(name, learning_rate=0.05), num_steps=50), 50)
  assert not np.allclose(trajectory[0], START)
  start_distance = np.linalg.norm(START - TARGET)
  assert np.linalg.norm(trajectory[-1] - TARGET) < 0.5 * start_distance


def test_adamw_matches_optax_adamw_and_numpy():
  config = _config("adamw", learning_rate=0.1, weight_decay=0.05, b1=0.8, b2=0.95, eps=1e-6)
  ours = _run(build_optimizer(config, num_steps=10), 10)
  reference = _run(optax.adamw(0.1, b1=0.8, b2=0.95, eps=1e-6, weight_decay=0.05), 10)
  for a, b in zip(ours, reference, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  expected = _np_adam(10, 0.1, 0.8, 0.95, 1e-6, decoupled_wd=0.05)
  for a, b in zip(ours, expected, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_adam_uses_coupled_l2_weight_decay():
  config = _config("adam", learning_rate=0.1, weight_decay=0.05)
  ours = _run(build_optimizer(config, num_steps=10), 10)
  expected = _np_adam(10, 0.1, 0.9, 0.999, 1e-8, coupled_wd=0.05)
  for a, b in zip(ours, expected, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # …which differs from decoupled AdamW with the same numbers.
  adamw = _run(build_optimizer(_config("adamw", learning_rate=0.1, weight_decay=0.05), 10), 10)
  assert not np.allclose(ours[-1], adamw[-1], rtol=1e-4)


@pytest.mark.parametrize("momentum, nesterov", [(0.9, False), (0.9, True), (0.0, False)])
def test_sgd_matches_pytorch_semantics(momentum, nesterov):
  config = _config(
    "sgd", learning_rate=0.1, weight_decay=0.01, momentum=momentum, nesterov=nesterov
  )
  ours = _run(build_optimizer(config, num_steps=8), 8)
  expected = _np_sgd(8, 0.1, momentum, 0.01, nesterov)
  for a, b in zip(ours, expected, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_grad_clip_norm_clips_the_global_norm():
  far = TARGET + np.array([30.0, 40.0, 0.0, 0.0], np.float32)  # gradient norm 50
  config = _config("sgd", learning_rate=1.0, momentum=0.0, grad_clip_norm=5.0)
  (after,) = _run(build_optimizer(config, num_steps=1), 1, params=far)
  np.testing.assert_allclose(far - after, [3.0, 4.0, 0.0, 0.0], rtol=1e-5, atol=1e-5)


def _schedule(schedule, warmup, num_steps=110, lr=1.0):
  config = _config("adamw", learning_rate=lr, schedule=schedule, warmup_steps=warmup)
  return learning_rate_schedule(config, num_steps)


def test_warmup_cosine_schedule_values():
  schedule = _schedule("cosine", warmup=10, num_steps=110, lr=2.0)
  expected = {
    0: 0.0,
    5: 1.0,  # halfway through the linear warm-up
    10: 2.0,  # peak
    35: 2.0 * 0.5 * (1 + np.cos(np.pi * 25 / 100)),
    60: 1.0,  # halfway through the cosine
    110: 0.0,
    200: 0.0,
  }
  for step, value in expected.items():
    assert float(schedule(step)) == pytest.approx(value, abs=1e-6), step
  # The optimizer follows the schedule: SGD without momentum moves by lr · grad.
  config = _config("sgd", learning_rate=2.0, schedule="cosine", warmup_steps=10, momentum=0.0)
  trajectory = _run(build_optimizer(config, num_steps=110), 2)
  np.testing.assert_array_equal(trajectory[0], START)  # lr = 0 at step 0
  np.testing.assert_allclose(trajectory[1], START - 0.2 * (START - TARGET), rtol=1e-5, atol=1e-6)


def test_constant_schedule_with_and_without_warmup():
  schedule = _schedule("constant", warmup=4, lr=0.5)
  assert [float(schedule(s)) for s in (0, 2, 4, 100)] == pytest.approx([0.0, 0.25, 0.5, 0.5])
  schedule = _schedule("cosine", warmup=0, num_steps=100, lr=0.5)
  assert float(schedule(0)) == pytest.approx(0.5)
  assert float(schedule(50)) == pytest.approx(0.25)


def test_unknown_optimizer_or_schedule_raises():
  with pytest.raises(ValueError, match="'lamb'"):
    build_optimizer(_config("lamb"), num_steps=10)
  with pytest.raises(ValueError, match="'linear'"):
    build_optimizer(_config("adamw", schedule="linear"), num_steps=10)


# ----------------------------------------------------------------------------------------------
# Configs.


def test_parse_arg_flags_and_values():
  flags, values = common.parse_arg(
    " smoke , dataset=nifti ,size=3", flags={"smoke", "full"}, values={"dataset": "x", "size": "1"}
  )
  assert flags == {"smoke"}
  assert values == {"dataset": "nifti", "size": "3"}
  flags, values = common.parse_arg(None, flags={"smoke"}, values={"dataset": "x"})
  assert flags == set() and values == {"dataset": "x"}
  flags, values = common.parse_arg("smoke,full,", flags={"smoke", "full"}, values={})
  assert flags == {"smoke", "full"} and values == {}
  # Values keep everything after the first '='.
  _, values = common.parse_arg("path=a=b", flags=set(), values={"path": ""})
  assert values == {"path": "a=b"}


@pytest.mark.parametrize("arg", ["tiny", "smoke=1", "dataset", "colour=red"])
def test_parse_arg_unknown_option_names_the_accepted_ones(arg):
  with pytest.raises(ValueError) as info:
    common.parse_arg(arg, flags={"smoke", "full"}, values={"dataset": "x"})
  message = str(info.value)
  assert repr(arg) in message
  assert "full" in message and "smoke" in message and "dataset" in message


@pytest.mark.parametrize("arg", [None, "smoke", "full"])
def test_scunet_config_is_locked_and_consistent(arg):
  config = scunet_config.get_config(arg)
  assert isinstance(config, ml_collections.ConfigDict)
  assert config.is_locked
  # Unknown keys cannot be added, at any level.
  with pytest.raises(AttributeError, match="locked"):
    config.no_such_key = 1
  with pytest.raises(KeyError, match="locked"):
    config["no_such_key"] = 1
  with pytest.raises(AttributeError, match="locked"):
    config.data.no_such_key = 1
  # Types of existing fields are enforced.
  with pytest.raises(TypeError):
    config.train.num_steps = "many"
  # Existing fields can be overridden (what --config.x=y does).
  config.optimizer.learning_rate = 1e-4
  assert config.optimizer.learning_rate == 1e-4
  # Every name the config uses is in its table.
  assert config.method in METHODS
  assert config.model.name in MODELS
  assert config.data.train_source.name in DATASETS
  assert config.data.eval_source.name in DATASETS
  assert all(name in LOSSES for name in config.loss)
  assert [name for name, _, _ in losses.active_terms(config.loss)] == ["soft_dice"]
  # Source sections stay open for new fields (a source swapped on the command line).
  config.data.train_source.root = "/data"
  assert config.data.train_source.root == "/data"
  for name in (*config.data.train_transforms, *config.data.eval_transforms):
    assert name in TRANSFORMS
  # Patch geometry: training crops are the evaluation patches, which overlap and tile.
  assert config.data.crop_size == config.eval.patch_size
  assert 0 < config.eval.patch_stride <= config.eval.patch_size
  assert config.eval.patch_size % 8 == 0
  assert config.data.train_source.image_size >= config.eval.patch_size
  # The optimizer section builds.
  build_optimizer(config.optimizer, config.train.num_steps)


def test_scunet_config_variants_differ():
  default, smoke, full = (scunet_config.get_config(a) for a in (None, "smoke", "full"))
  assert smoke.train.num_steps < default.train.num_steps < full.train.num_steps
  assert smoke.data.train_source.image_size == 64
  assert full.data.train_source.image_size == 1024
  assert full.eval.patch_size == 512
  assert default.optimizer.name == "adamw"
  assert default.optimizer.learning_rate == pytest.approx(1e-3)
  with pytest.raises(ValueError, match="tiny"):
    scunet_config.get_config("tiny")
