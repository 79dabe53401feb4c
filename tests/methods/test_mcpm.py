"""MCPM / MW-Net: the meta-gradient against finite differences, the weights, the sharded step,
`meta_every` and `remat`, the baseline variant, the configs and a smoke run end to end."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_segmentation import TinySegNet, assert_trees_close, noisy_example, pixel_cross_entropy

from configs import mcpm as mcpm_config
from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core import trainer
from mlsup_jax.core.config_resolution import resolve_config
from mlsup_jax.core.run_setup import RunSetup
from mlsup_jax.data import pipeline
from mlsup_jax.methods.mcpm import McpmMethod
from mlsup_jax.nn import MODELS
from mlsup_jax.nn.meta import MetaMaskNet, MetaWeightNet

NUM_CLASSES = 3


@pytest.fixture
def tiny_model():
  MODELS.register("test_tiny_seg", TinySegNet)
  yield
  MODELS.unregister("test_tiny_seg")


def _config(
  variant="mcpm", model="unet", backbone=(4, 8), dtype="float32", num_classes=NUM_CLASSES, **meta
):
  config = mcpm_config.get_config(f"smoke,variant={variant}")
  with config.unlocked():
    config.model.name = model
    config.model.num_classes = num_classes
    config.model.features = backbone
    config.model.dtype = dtype
    config.meta.features = (3,)
    config.meta.update(meta)
  return config


def _batch(seed=0, size=8, batch=2, dtype=np.float32) -> dict:
  """Random noisy and clean (meta) examples: `image [B, S, S, 1]`, `label [B, S, S]`."""
  rng = np.random.default_rng(seed)
  noisy = noisy_example(rng, NUM_CLASSES, size, batch, dtype)
  return {**noisy, "meta": noisy_example(rng, NUM_CLASSES, size, batch, dtype)}


# Inits are jitted: eager Flax init compiles every random op on its own (seconds on a CPU).


def _as(tree, dtype):
  return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)


def _unit_direction(tree, seed):
  leaves, treedef = jax.tree.flatten(tree)
  rng = np.random.default_rng(seed)
  draws = [rng.normal(size=np.shape(x)) for x in leaves]
  norm = np.sqrt(sum(float(np.sum(d * d)) for d in draws))
  return jax.tree.unflatten(treedef, [jnp.asarray(d / norm, jnp.float64) for d in draws])


def _vdot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


# ---------------------------------------------------------------------------------------------
# The bilevel meta-gradient.


@pytest.mark.parametrize("variant, normalize", [("mcpm", False), ("mwnet", False), ("mcpm", True)])
def test_meta_gradient_matches_central_differences_in_float64(tiny_model, variant, normalize):
  """`∇_Θ L_meta(W − α ∇_W mean(R_Θ ℓ(W)))` by `jax.grad` vs central differences.

  Tolerance: in float64 the central difference with ε = 1e-5 has truncation error
  O(ε² f''') ≈ 1e-10 and round-off ≈ 1e-16 · |f| / ε ≈ 1e-11, so the directional derivatives
  (≈ 1e-3 here) must agree to rtol 1e-6; a first-order shortcut (no gradient through the
  virtual step) or a missed term would be off by O(1). In float32 round-off alone would be
  ≈ 1e-7 · |f| / ε ≈ 1e-2, too coarse to tell.
  """
  with jax.enable_x64(True):
    config = _config(
      variant, model="test_tiny_seg", backbone=(4,), dtype="float64", normalize=normalize
    )
    method = McpmMethod(config)
    batch = _as(_batch(dtype=np.float64), None)
    state = jax.jit(method.init)(jax.random.key(0), batch)
    params = _as(state.params, jnp.float64)
    meta = _as(state.extra["meta_params"], jnp.float64)
    inner_lr = jnp.asarray(0.5, jnp.float64)  # A large α makes the meta-gradient large.
    rng = jax.random.key(1)

    model_state = state.model_state
    objective = jax.jit(
      lambda m: method.meta_objective(m, params, model_state, batch, inner_lr, rng)[0]
    )
    loss, _, grads = jax.jit(
      lambda m: method.meta_gradient(m, params, model_state, batch, inner_lr, rng)
    )(meta)
    assert loss.dtype == jnp.float64
    assert all(g.dtype == jnp.float64 for g in jax.tree.leaves(grads))
    np.testing.assert_allclose(loss, objective(meta), rtol=1e-12)
    eps = 1e-5
    for seed in range(3):
      d = _unit_direction(meta, seed)
      plus = objective(jax.tree.map(lambda m, v: m + eps * v, meta, d))
      minus = objective(jax.tree.map(lambda m, v: m - eps * v, meta, d))
      numeric = float((plus - minus) / (2 * eps))
      analytic = float(_vdot(grads, d))
      assert abs(analytic) > 1e-5, "the meta-gradient is too small for the test to mean much"
      np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-12)

    # Without a virtual step the meta loss does not depend on Θ at all.
    _, _, zero = method.meta_gradient(
      meta, params, model_state, batch, jnp.asarray(0.0, jnp.float64), rng
    )
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(zero))


def test_real_step_gradient_treats_the_weights_as_constants(tiny_model):
  method = McpmMethod(_config("mcpm", model="test_tiny_seg", backbone=(4,)))
  batch = _batch()
  state = jax.jit(method.init)(jax.random.key(0), batch)
  meta, rng = state.extra["meta_params"], jax.random.key(2)
  model_state = state.model_state
  grads = jax.grad(lambda p: method.weighted_loss(p, meta, model_state, batch, rng)[0])(
    state.params
  )

  def loss_map(params):
    return pixel_cross_entropy(
      method.logits(params, model_state, batch["image"], rng)[0], batch["label"]
    )

  fixed = method.weights(meta, loss_map(state.params), batch["image"])  # Concrete numbers.
  expected = jax.grad(lambda p: jnp.mean(fixed * loss_map(p)))(state.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8), grads, expected)


@pytest.mark.parametrize("variant", ["mcpm", "mwnet"])
def test_normalized_weights_have_batch_mean_one_and_keep_their_ratios(tiny_model, variant):
  raw = McpmMethod(_config(variant, model="test_tiny_seg", backbone=(4,)))
  normalized = McpmMethod(_config(variant, model="test_tiny_seg", backbone=(4,), normalize=True))
  batch = _batch(batch=4)
  state = jax.jit(raw.init)(jax.random.key(0), batch)
  loss_map = jnp.asarray(np.random.default_rng(3).exponential(size=batch["label"].shape))
  plain = raw.weights(state.extra["meta_params"], loss_map, batch["image"])
  scaled = normalized.weights(state.extra["meta_params"], loss_map, batch["image"])
  np.testing.assert_allclose(float(jnp.mean(scaled)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(scaled, plain / jnp.mean(plain), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# The meta networks' weights.


def test_meta_mask_net_gives_per_pixel_weights_in_unit_interval():
  net = MetaMaskNet(features=(8, 8), kernel_size=3)
  loss_map = jnp.asarray(np.random.default_rng(0).exponential(1.0, (3, 8, 10)), jnp.float32)
  image = jnp.asarray(np.random.default_rng(1).normal(size=(3, 8, 10, 2)), jnp.float32)
  init, apply = jax.jit(net.init), jax.jit(net.apply)
  params = init(jax.random.key(0), loss_map)
  for scale in (1.0, 1e4):  # Large losses saturate the sigmoid but stay in [0, 1].
    weights = apply(params, scale * loss_map)
    assert weights.shape == (3, 8, 10) and weights.dtype == jnp.float32
    assert float(weights.min()) >= 0.0 and float(weights.max()) <= 1.0
  assert float(jnp.std(apply(params, loss_map))) > 0  # Not a constant map.
  with_image = init(jax.random.key(0), loss_map, image)
  assert with_image["params"]["Conv_0"]["kernel"].shape == (3, 3, 3, 8)  # Loss map + 2 channels.
  assert apply(with_image, loss_map, image).shape == (3, 8, 10)
  with pytest.raises(ValueError, match="rank"):
    apply(params, loss_map[0])


def test_meta_weight_net_is_mwnets_vnet():
  net = MetaWeightNet()
  losses = jnp.asarray([0.1, 1.0, 3.0, 10.0])
  params = jax.jit(net.init)(jax.random.key(0), losses)
  shapes = jax.tree.map(jnp.shape, params["params"])
  assert shapes == {
    "Dense_0": {"kernel": (1, 100), "bias": (100,)},
    "Dense_1": {"kernel": (100, 1), "bias": (1,)},
  }
  weights = net.apply(params, losses)
  assert weights.shape == (4,) and float(weights.min()) >= 0.0 and float(weights.max()) <= 1.0


@pytest.mark.parametrize("variant", ["mcpm", "mwnet", "unet"])
@pytest.mark.parametrize("normalize", [False, True])
def test_method_weights_have_the_loss_map_shape(tiny_model, variant, normalize):
  method = McpmMethod(
    _config(variant, model="test_tiny_seg", backbone=(4,), use_image=True, normalize=normalize)
  )
  batch = _batch(batch=3)
  state = jax.jit(method.init)(jax.random.key(0), batch)
  loss_map = jnp.asarray(np.random.default_rng(0).exponential(1.0, (3, 8, 8)), jnp.float32)
  weights = method.weights(state.extra.get("meta_params"), loss_map, batch["image"])
  assert weights.shape == (3, 8, 8)
  assert float(weights.min()) >= 0.0
  if normalize and variant != "unet":  # Batch mean 1 (the baseline's weights are all 1).
    np.testing.assert_allclose(float(jnp.mean(weights)), 1.0, rtol=1e-6)
  else:  # The meta nets end in a sigmoid.
    assert float(weights.max()) <= 1.0
  per_image_spread = jnp.ptp(weights.reshape(3, -1), axis=1)
  if variant == "mwnet":  # One weight per image.
    np.testing.assert_array_equal(per_image_spread, 0.0)
    assert float(jnp.ptp(weights[:, 0, 0])) > 0
  elif variant == "mcpm":
    assert float(per_image_spread.min()) > 0
  else:
    np.testing.assert_array_equal(weights, 1.0)


# ---------------------------------------------------------------------------------------------
# meta_every, remat and the baseline.


def _run_steps(method, state, batch, steps):
  step = jax.jit(method.train_step)
  states, metrics = [], []
  for i in range(steps):
    state, m = step(state, batch, jax.random.key(10 + i))
    states.append(state)
    metrics.append(m)
  return states, metrics


@pytest.mark.parametrize(
  "model, backbone",
  [("test_tiny_seg", (4,)), pytest.param("unet", (4, 8), marks=pytest.mark.slow)],
)
def test_remat_gives_the_same_steps_as_the_plain_step(tiny_model, model, backbone):
  batch = _batch(size=16)
  plain = McpmMethod(_config("mcpm", model=model, backbone=backbone))
  remat = McpmMethod(_config("mcpm", model=model, backbone=backbone, remat=True))
  state = jax.jit(plain.init)(jax.random.key(0), batch)
  plain_states, plain_metrics = _run_steps(plain, state, batch, 2)
  remat_states, remat_metrics = _run_steps(remat, state, batch, 2)
  assert_trees_close(plain_states[-1].params, remat_states[-1].params)
  assert_trees_close(plain_states[-1].extra, remat_states[-1].extra)
  for a, b in zip(plain_metrics, remat_metrics, strict=True):
    assert_trees_close(a, b)
  # The meta network did move, so the comparison covers the meta update.
  moved = jax.tree.map(
    lambda x, y: float(jnp.abs(x - y).max()),
    state.extra["meta_params"],
    plain_states[-1].extra["meta_params"],
  )
  assert max(jax.tree.leaves(moved)) > 0


def test_meta_every_updates_the_meta_net_only_on_its_steps(tiny_model):
  batch = _batch()
  every1 = McpmMethod(_config("mcpm", model="test_tiny_seg", backbone=(4,)))
  every2 = McpmMethod(_config("mcpm", model="test_tiny_seg", backbone=(4,), meta_every=2))
  state = jax.jit(every1.init)(jax.random.key(0), batch)
  (a0, a1, a2), _ = _run_steps(every2, state, batch, 3)
  (b0,), _ = _run_steps(every1, state, batch, 1)
  # Step 0 (0 % 2 == 0): exactly the plain step.
  assert_trees_close(a0.params, b0.params)
  assert_trees_close(a0.extra, b0.extra)
  # Step 1: the meta net is left alone; the real step uses the step-0 meta net.
  jax.tree.map(np.testing.assert_array_equal, a1.extra, a0.extra)
  meta = a0.extra["meta_params"]
  grads = jax.grad(
    lambda p: every2.weighted_loss(p, meta, a0.model_state, batch, jax.random.key(0))[0]
  )(a0.params)
  expected = a0.apply_gradients(grads=grads, optimizer=every2.optimizer)
  assert_trees_close(a1.params, expected.params)
  # Step 2: a meta update again.
  changed = jax.tree.map(lambda x, y: bool(jnp.any(x != y)), a2.extra["meta_params"], meta)
  assert any(jax.tree.leaves(changed))


def test_unet_variant_is_plain_cross_entropy_training(tiny_model):
  method = McpmMethod(_config("unet", model="test_tiny_seg", backbone=(4,)))
  batch = {k: v for k, v in _batch().items() if k != "meta"}  # No meta stream needed.
  state = jax.jit(method.init)(jax.random.key(0), batch)
  assert state.extra == {}
  (new,), (metrics,) = _run_steps(method, state, batch, 1)
  np.testing.assert_allclose(metrics["loss"], metrics["train/cross_entropy"], rtol=1e-6)
  assert "meta_loss" not in metrics

  def mean_ce(p):
    logits, _ = method.logits(p, state.model_state, batch["image"], jax.random.key(0))
    return jnp.mean(pixel_cross_entropy(logits, batch["label"]))

  expected = state.apply_gradients(
    grads=jax.grad(mean_ce)(state.params), optimizer=method.optimizer
  )
  assert_trees_close(new.params, expected.params)


def test_missing_meta_stream_is_a_clear_error(tiny_model):
  method = McpmMethod(_config("mcpm", model="test_tiny_seg", backbone=(4,)))
  batch = {k: v for k, v in _batch().items() if k != "meta"}
  # Already `init` (which traces the meta objective for its metrics) names the missing stream.
  with pytest.raises(KeyError, match="config.data.streams.meta"):
    jax.jit(method.init)(jax.random.key(0), batch)


@pytest.mark.parametrize(
  "field, value, message", [("weighting", "voxel", "weighting"), ("meta_every", 0, "meta_every")]
)
def test_bad_meta_options_are_clear_errors(field, value, message):
  config = _config("mcpm")
  with config.unlocked():
    config.meta[field] = value
  with pytest.raises(ValueError, match=message):
    McpmMethod(config)


# ---------------------------------------------------------------------------------------------
# Sharding, configs, end to end.


@pytest.mark.parametrize(
  "variant, model, backbone",
  [
    ("mcpm", "test_tiny_seg", (4,)),
    ("mwnet", "test_tiny_seg", (4,)),
    pytest.param("mcpm", "unet", (4, 8), marks=pytest.mark.slow),
  ],
)
def test_sharded_step_matches_single_device(devices, tiny_model, variant, model, backbone):
  """Two steps on an 8-device data-parallel mesh and on one device agree to float32 round-off.

  The batch comes from the real pipeline (phantom, noisy train role + clean meta stream). Both
  optimizers are SGD here: Adam's first update is ≈ lr · sign(g), which can flip for near-zero
  meta-gradient components whose sums differ only in reduction order (tests/core/test_trainer.py).
  """
  config = _config(variant, model=model, backbone=backbone, num_classes=5)
  with config.unlocked():
    config.meta.optimizer.name = "sgd"
    config.meta.optimizer.learning_rate = 0.5
  dataset = pipeline.train_dataset(config.data)
  batches = [dataset[i] for i in range(2)]  # The same host batches for both meshes.

  def run(devs):
    setup = RunSetup(config, devs)
    _, shardings = setup.state_shardings(0)
    state = setup.create_state(0)
    initial_meta = jax.device_get(state.extra["meta_params"])
    step = setup.compile_step(setup.stages[0], shardings)
    seen = []
    for i, local in enumerate(batches):
      batch = mesh_lib.global_batch(local, setup.mesh)
      assert len(batch["meta"]["image"].sharding.device_set) == len(devs)
      state, metrics = step(state, batch, jax.random.fold_in(setup.train_rng, i))
      seen.append(jax.device_get(metrics))
    return seen, jax.device_get(state), initial_meta

  sharded_metrics, sharded, initial_meta = run(devices)
  single_metrics, single, _ = run(devices[:1])
  for a, b in zip(sharded_metrics, single_metrics, strict=True):
    assert set(a) >= {"loss", "meta_loss", "weight_mean", "weight_noisy_pixels"}
    assert_trees_close(a, b, rtol=1e-5, atol=1e-6)
  assert_trees_close(sharded.params, single.params, rtol=1e-5, atol=1e-6)
  assert_trees_close(sharded.extra, single.extra, rtol=1e-5, atol=1e-6)
  # The meta network moved, so the comparison covers the sharded meta update.
  moved = jax.tree.map(
    lambda x, y: bool(np.any(x != y)), sharded.extra["meta_params"], initial_meta
  )
  assert any(jax.tree.leaves(moved))


@pytest.mark.parametrize(
  "arg",
  [
    "smoke",
    "smoke,variant=mwnet",
    "smoke,variant=unet",
    "smoke,noise=erosion,ratio=0.2",
    "smoke,noise=elastic,ratio=1",
    None,
    "variant=mwnet,noise=elastic",
  ],
)
def test_configs_build_and_trace(arg):
  config = mcpm_config.get_config(arg)
  setup = RunSetup(config)
  abstract, _ = setup.state_shardings(0)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), setup.example_batch)
  assert ("meta" in batch) == (config.meta.weighting != "none")
  new_state, metrics = jax.eval_shape(setup.stages[0].train_step, abstract, batch, setup.train_rng)
  assert jax.tree.map(jnp.shape, new_state.params) == jax.tree.map(jnp.shape, abstract.params)
  assert jax.tree.map(jnp.shape, new_state.extra) == jax.tree.map(jnp.shape, abstract.extra)
  assert all(m.shape == () for m in jax.tree.leaves(metrics))


@pytest.mark.slow
def test_smoke_config_trains_and_evaluates(tmp_path):
  results = trainer.train_and_evaluate(mcpm_config.get_config("smoke"), str(tmp_path))
  assert {"dice", "iou", "miou", "hd95", "asd", "dice/liver"} <= set(results)
  assert 0.0 <= results["dice"] <= 1.0 and 0.0 <= results["miou"] <= 1.0
  assert (tmp_path / "eval_results.json").exists()


@pytest.mark.slow
def test_mcpm_trains_another_registered_network_by_a_config_line(tmp_path):
  """Swapping the backbone is `config.model.name`: MCPM on SCU-Net (BatchNorm) end to end.

  As on the command line (`--config.model.name=scunet`), the U-Net's fields SCU-Net does not
  take (`features`) are dropped and the shared ones (`num_classes`, `dropout_rate`, `dtype`)
  kept.
  """
  config = mcpm_config.get_config("smoke")
  config.model.name = "scunet"
  config = resolve_config(config, {"model.name"})
  assert set(config.model) == {"name", "num_classes", "dropout_rate", "dtype"}
  results = trainer.train_and_evaluate(config, str(tmp_path))
  assert 0.0 <= results["dice"] <= 1.0
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["model"]["name"] == "scunet"
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert any("train/meta_loss" in row for row in rows)


def test_meta_every_variants_equal_the_one_program_step_and_train(devices, tmp_path):
  """The trainer's host-chosen variants (meta / plain) compute what the `lax.cond` step does."""
  import jax
  import numpy as np

  from configs import mcpm as mcpm_config
  from mlsup_jax.core import mesh as mesh_lib
  from mlsup_jax.core import trainer
  from mlsup_jax.core.run_setup import RunSetup
  from mlsup_jax.data import pipeline

  config = mcpm_config.get_config("smoke")
  with config.unlocked():
    config.meta.meta_every = 2
    config.optimizer.name = "sgd"
  setup = RunSetup(config, devices[:1])
  stage = setup.stages[0]
  assert set(stage.variants) == {"meta", "plain"}
  assert [stage.variant_of(s) for s in range(4)] == ["meta", "plain", "meta", "plain"]
  _, shardings = setup.state_shardings(0)
  batches = [pipeline.train_dataset(config.data)[i] for i in range(4)]

  def run(pick):
    state = setup.create_state(0)
    losses_seen = []
    for i, local in enumerate(batches):
      batch = mesh_lib.global_batch(local, setup.mesh)
      state, metrics = pick(i)(state, batch, jax.random.fold_in(setup.train_rng, i))
      losses_seen.append(float(metrics["loss"]))
    return np.asarray(losses_seen), jax.device_get(state)

  one = setup.compile_step(stage, shardings)
  compiled = {n: setup.compile_step(stage, shardings, f) for n, f in stage.variants.items()}
  cond_losses, cond_state = run(lambda i: one)
  variant_losses, variant_state = run(lambda i: compiled[stage.variant_of(i)])
  np.testing.assert_allclose(variant_losses, cond_losses, rtol=1e-6)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), variant_state, cond_state
  )
  # The trainer runs the variants end to end.
  results = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert np.isfinite(results["dice"])
