"""PINT: the EMA teacher, the perturbed passes and their entropy, the pixel / image weights and
their switches, the reduction to plain cross-entropy, the sharded step, configs, a smoke run."""

from __future__ import annotations

import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from tiny_segmentation import TinySegNet, assert_trees_close, noisy_example, pixel_cross_entropy

from configs import pint as pint_config
from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core import teacher, trainer
from mlsup_jax.core.run_setup import RunSetup
from mlsup_jax.data import pipeline
from mlsup_jax.losses.consistency import class_probabilities, probability_mse
from mlsup_jax.methods import METHODS
from mlsup_jax.methods.pint import PintMethod
from mlsup_jax.nn import MODELS
from mlsup_jax.ood import uncertainty

NUM_CLASSES = 3
LN2 = math.log(2.0)


class LabelEchoNet(TinySegNet):
  """A network that already knows the labels: the image's channel 0 holds the label value.

  Logits `5 · one_hot(round(x₀))` plus a small trainable 1×1 conv, so the prediction is
  confident (entropy ≈ 0.08 nats with 3 classes, far below τ ≥ 0.52), agrees with the label and
  survives the ±0.2 input noise, while its cross-entropy (≈ 0.013) and gradients are not zero.
  (TinySegNet's fields, another forward pass.)
  """

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    echo = 5.0 * jax.nn.one_hot(jnp.round(x[..., 0]).astype(jnp.int32), self.num_classes)
    conv = nn.Conv(
      self.num_classes, (1,) * self.spatial_dims, kernel_init=nn.initializers.normal(0.01)
    )
    return echo + conv(x)


@pytest.fixture(scope="module", autouse=True)
def registered():
  """The test networks in MODELS (`pint` itself is listed in methods/__init__.py)."""
  assert "pint" in METHODS
  MODELS.register("test_pint_tiny", TinySegNet)
  MODELS.register("test_pint_echo", LabelEchoNet)
  yield
  MODELS.unregister("test_pint_tiny")
  MODELS.unregister("test_pint_echo")


def _config(variant="pint", model="test_pint_tiny", backbone=(4,), num_classes=NUM_CLASSES, **pint):
  config = pint_config.get_config(f"smoke,variant={variant}")
  with config.unlocked():
    config.model.name = model
    config.model.num_classes = num_classes
    config.model.features = backbone
    # UA-MT's binary schedule (0.75 → 1) · ln 2, which the expected weights below are written for.
    config.pint.update({"threshold_scale": LN2, "threshold_end": 1.0, **pint})
  return config


def _batch(seed=0, size=8, batch=4) -> dict:
  """`image [B, S, S, 1]` = label + noise, `label [B, S, S]` in {0, 1, 2}."""
  return noisy_example(np.random.default_rng(seed), NUM_CLASSES, size, batch)


# ---------------------------------------------------------------------------------------------
# The EMA teacher and the ramps.


def test_ema_decay_is_uamts_warm_start():
  # γ_t = min(1 − 1/(t+1), 0.99): 0, 1/2, 2/3, …, 0.99 from t = 99 on.
  got = [float(teacher.ema_decay(t, 0.99)) for t in (0, 1, 2, 50, 99, 100, 5000)]
  np.testing.assert_allclose(got, [0.0, 0.5, 2 / 3, 50 / 51, 0.99, 0.99, 0.99], rtol=1e-6)


def test_ema_update_matches_the_formula():
  old = {"a": jnp.asarray([1.0, -2.0]), "b": {"c": jnp.asarray(4.0)}}
  new = {"a": jnp.asarray([3.0, 2.0]), "b": {"c": jnp.asarray(0.0)}}
  out = teacher.ema_update(old, new, jnp.float32(0.75))
  # 0.75 · old + 0.25 · new, by hand.
  np.testing.assert_allclose(out["a"], [1.5, -1.0], rtol=1e-7)
  np.testing.assert_allclose(out["b"]["c"], 3.0, rtol=1e-7)


def test_sigmoid_rampup_values():
  assert float(teacher.sigmoid_rampup(7, 0)) == 1.0
  np.testing.assert_allclose(float(teacher.sigmoid_rampup(0, 100)), math.exp(-5.0), rtol=1e-6)
  np.testing.assert_allclose(float(teacher.sigmoid_rampup(50, 100)), math.exp(-1.25), rtol=1e-6)
  assert float(teacher.sigmoid_rampup(100, 100)) == 1.0
  assert float(teacher.sigmoid_rampup(250, 100)) == 1.0


def test_train_step_updates_the_teacher_by_the_ema_formula():
  """θ̃ after step t is `γ_t θ̃ + (1 − γ_t) θ_new`; the optimizer never moves the teacher."""
  method = PintMethod(_config("pint"))
  batch = _batch()
  state = method.init(jax.random.key(0), batch)
  assert_trees_close(state.extra["teacher_params"], state.params, rtol=0, atol=0)
  step = jax.jit(method.train_step)
  s1, _ = step(state, batch, jax.random.key(1))
  # t = 0: γ = 0, the teacher becomes the updated student.
  assert_trees_close(s1.extra["teacher_params"], s1.params, rtol=0, atol=0)
  s2, metrics = step(s1, batch, jax.random.key(2))
  assert float(metrics["ema_decay"]) == 0.5
  expected = jax.tree.map(lambda a, b: 0.5 * a + 0.5 * b, s1.params, s2.params)
  assert_trees_close(s2.extra["teacher_params"], expected)
  # Far into training: γ = 0.99.
  late = s2.replace(step=jnp.asarray(500, jnp.int32))
  s3, metrics = step(late, batch, jax.random.key(3))
  np.testing.assert_allclose(float(metrics["ema_decay"]), 0.99, rtol=1e-7)
  expected = jax.tree.map(lambda a, b: 0.99 * a + 0.01 * b, s2.extra["teacher_params"], s3.params)
  assert_trees_close(s3.extra["teacher_params"], expected)
  assert not np.allclose(
    jax.tree.leaves(s3.extra["teacher_params"])[0], jax.tree.leaves(s3.params)[0]
  )


# ---------------------------------------------------------------------------------------------
# T perturbed passes, mean and entropy.


def test_mean_and_entropy_by_hand():
  # Two passes at two pixels (K = 2): mean [0.7, 0.3] and [0.5, 0.5].
  probs = jnp.asarray([[[0.9, 0.1], [1.0, 0.0]], [[0.5, 0.5], [0.0, 1.0]]])
  mean, u = uncertainty.mean_and_entropy(probs)
  np.testing.assert_allclose(mean, [[0.7, 0.3], [0.5, 0.5]], rtol=1e-6)
  expected = [-(0.7 * math.log(0.7) + 0.3 * math.log(0.3)), LN2]  # 0.6108643, 0.6931472.
  np.testing.assert_allclose(u, expected, rtol=1e-6)
  # A pass that is certain everywhere has zero uncertainty (0 ln 0 = 0, no NaN).
  _, zero = uncertainty.mean_and_entropy(jnp.asarray([[[1.0, 0.0]], [[1.0, 0.0]]]))
  assert float(zero[0]) == 0.0


def test_perturbed_passes_add_clipped_gaussian_noise_per_pass():
  images = jnp.zeros((2, 32, 32, 1))
  passes = uncertainty.perturbed_predictions(
    lambda x, key: x, images, jax.random.key(0), num_passes=8, noise_std=0.1, noise_clip=0.2
  )
  assert passes.shape == (8, 2, 32, 32, 1)
  noise = np.asarray(passes).reshape(8, -1)
  assert np.abs(noise).max() <= 0.2 + 1e-7
  # Every pass draws its own noise.
  assert all(not np.allclose(noise[i], noise[j]) for i in range(8) for j in range(i))
  # clip(N(0, 0.1²), ±0.2): P(|ε| = 0.2) = 2(1 − Φ(2)) ≈ 0.0455; std² = 0.01 E[min(Z², 4)].
  clipped = np.mean(np.isclose(np.abs(noise), 0.2))
  np.testing.assert_allclose(clipped, 2 * stats.norm.sf(2.0), atol=0.006)  # ≈ 5 σ of 16384.
  z2 = stats.norm.expect(lambda z: min(z * z, 4.0), lb=-np.inf, ub=np.inf)
  np.testing.assert_allclose(noise.std(), 0.1 * math.sqrt(z2), rtol=0.03)
  np.testing.assert_allclose(noise.mean(), 0.0, atol=0.003)


def test_passes_per_call_does_not_change_the_passes():
  images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 1)), jnp.float32)

  def predict(x, key):
    return jax.nn.softmax(jnp.concatenate([x, -x], -1) + jax.random.normal(key, x.shape), -1)

  kwargs = dict(num_passes=3, noise_std=0.1, noise_clip=0.2)
  whole = jax.jit(
    lambda x: uncertainty.perturbed_predictions(predict, x, jax.random.key(1), **kwargs)
  )
  chunked = jax.jit(
    lambda x: uncertainty.perturbed_predictions(
      predict, x, jax.random.key(1), passes_per_call=2, **kwargs
    )
  )
  whole, chunked = whole(images), chunked(images)
  np.testing.assert_allclose(whole, chunked, rtol=1e-6)


def test_teacher_mean_and_uncertainty_of_the_method_against_numpy():
  """T passes through the method: p̄ and u recomputed in numpy from the same perturbed inputs."""
  method = PintMethod(_config("pint", num_passes=3))
  batch = _batch(size=6, batch=2)
  state = method.init(jax.random.key(0), batch)
  params, rng = state.extra["teacher_params"], jax.random.key(4)
  mean, u = jax.jit(method.teacher_predictions)(params, state.model_state, batch["image"], rng)
  # The perturbed inputs: the same passes with an identity network.
  inputs = uncertainty.perturbed_predictions(
    lambda x, key: x, jnp.asarray(batch["image"]), rng, num_passes=3, noise_std=0.1, noise_clip=0.2
  )
  logits = np.stack(
    [np.asarray(method.model.apply({"params": params}, x, train=False)) for x in inputs]
  )
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  expected_mean = probs.mean(0)
  expected_u = -np.sum(expected_mean * np.log(expected_mean), -1)
  np.testing.assert_allclose(mean, expected_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(u, expected_u, rtol=1e-5, atol=1e-6)
  assert u.shape == (2, 6, 6) and float(u.max()) <= math.log(NUM_CLASSES) + 1e-6


def test_consistency_loss_by_hand():
  # Softmax of [0, ln 3] is [1/4, 3/4]; target [0, 1]: (1/4)² + (1/4)² = 0.125.
  logits = jnp.asarray([[[0.0, math.log(3.0)]]])
  np.testing.assert_allclose(
    probability_mse(logits, jnp.asarray([[[0.0, 1.0]]])), [[0.125]], rtol=1e-6
  )
  # One sigmoid channel is read as two classes: σ(0) = 1/2 vs [1, 0] → 0.25 + 0.25.
  one = jnp.zeros((1, 1, 1))
  np.testing.assert_allclose(class_probabilities(one), [[[0.5, 0.5]]])
  np.testing.assert_allclose(probability_mse(one, jnp.asarray([[[1.0, 0.0]]])), [[0.5]], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Pixel and image weights, the switches, the ramp.


def test_pixel_trust_hard_threshold_and_its_schedule():
  method = PintMethod(_config("pnt", threshold_rampup_steps=100))
  u = jnp.asarray([[0.1, 0.6, 0.8]])
  # t = 0: τ = (0.75 + 0.25 e⁻⁵) ln 2 = 0.52102; t ≥ 100: τ = ln 2.
  np.testing.assert_allclose(
    float(method.threshold(0)), (0.75 + 0.25 * math.exp(-5)) * LN2, rtol=1e-6
  )
  np.testing.assert_allclose(float(method.threshold(100)), LN2, rtol=1e-6)
  np.testing.assert_array_equal(method.pixel_trust(u, 0), [[1.0, 0.0, 0.0]])
  np.testing.assert_array_equal(method.pixel_trust(u, 100), [[1.0, 1.0, 0.0]])


def test_threshold_defaults_to_a_constant_three_quarters_of_the_entropy_ceiling_ln_k():
  config = pint_config.get_config("small")
  assert config.pint.threshold_scale == pytest.approx(math.log(config.model.num_classes))
  method = PintMethod(config)
  for step in (0, 300, 600):
    np.testing.assert_allclose(float(method.threshold(step)), 0.75 * LN2, rtol=1e-6)


def test_soft_pixel_trust_is_a_sigmoid_that_tends_to_the_hard_one():
  u = jnp.asarray([[0.1, LN2, 0.8]])
  soft = PintMethod(_config("pnt", pixel_weighting="soft", soft_temperature=0.1))
  alpha = soft.pixel_trust(u, 10_000)  # τ = ln 2.
  np.testing.assert_allclose(alpha, jax.nn.sigmoid((LN2 - u) / 0.1), rtol=1e-6)
  assert float(alpha[0, 1]) == pytest.approx(0.5)
  sharp = PintMethod(_config("pnt", pixel_weighting="soft", soft_temperature=1e-4))
  np.testing.assert_allclose(sharp.pixel_trust(u, 10_000)[:, [0, 2]], [[1.0, 0.0]], atol=1e-6)


def test_image_trust_from_the_rank_of_the_mean_uncertainty():
  # U_i = [0.3, 0.1, 0.2, 0.4] → ranks [2, 0, 1, 3].
  u = jnp.asarray([0.3, 0.1, 0.2, 0.4])[:, None, None] * jnp.ones((4, 2, 2))
  linear = PintMethod(_config("int"))
  np.testing.assert_allclose(linear.image_trust(u), [1 / 3, 1.0, 2 / 3, 0.0], rtol=1e-6)
  hard = PintMethod(_config("int", image_weighting="rank_hard", image_keep_fraction=0.5))
  np.testing.assert_array_equal(hard.image_trust(u), [0.0, 1.0, 1.0, 0.0])
  # Ties are ranked by position; one image alone is trusted.
  np.testing.assert_allclose(linear.image_trust(jnp.zeros((3, 2, 2))), [1.0, 0.5, 0.0])
  np.testing.assert_allclose(linear.image_trust(jnp.ones((1, 2, 2))), [1.0])


def _uncertainty():
  """Image 0 certain (U small), image 1 uncertain; pixels below and above τ = ln 2."""
  return jnp.asarray([[[0.1, 0.2], [0.1, 0.9]], [[0.1, 0.9], [0.9, 0.9]]])


@pytest.mark.parametrize("variant", ["none", "pnt", "int", "pint"])
def test_switches_give_the_documented_weights(variant):
  method = PintMethod(_config(variant, pseudo_label_rampup_steps=0, threshold_rampup_steps=0))
  weights, parts = method.label_weights(_uncertainty(), jnp.asarray(0))
  alpha_v = np.asarray([[[1, 1], [1, 0]], [[1, 0], [0, 0]]], np.float32)
  alpha_i = np.asarray([1.0, 0.0])[:, None, None]
  expected = {
    "none": np.ones((2, 2, 2)),
    "pnt": alpha_v,
    "int": np.broadcast_to(alpha_i, (2, 2, 2)),
    # Rescue: the certain image keeps every label, the uncertain one falls back to PNT.
    "pint": 1 - (1 - alpha_i) * (1 - alpha_v),
  }[variant]
  np.testing.assert_array_equal(weights, expected)
  assert ("pixel_trust" in parts) == (variant in ("pnt", "pint"))
  assert ("image_trust" in parts) == (variant in ("int", "pint"))
  assert method.uses_teacher == (variant != "none")


def test_product_combination_and_the_pseudo_label_rampup():
  product = PintMethod(
    _config("pint", combine="product", pseudo_label_rampup_steps=0, threshold_rampup_steps=0)
  )
  weights, _ = product.label_weights(_uncertainty(), jnp.asarray(0))
  np.testing.assert_array_equal(weights, [[[1, 1], [1, 0]], [[0, 0], [0, 0]]])
  ramped = PintMethod(_config("pnt", pseudo_label_rampup_steps=100, threshold_rampup_steps=0))
  w0, parts = ramped.label_weights(_uncertainty(), jnp.asarray(0))
  lam = math.exp(-5.0)
  np.testing.assert_allclose(float(parts["rampup"]), lam, rtol=1e-6)
  # w̃ = 1 − λ (1 − α_v): trusted pixels stay 1, distrusted ones start at 1 − e⁻⁵.
  np.testing.assert_allclose(w0[1], [[1.0, 1 - lam], [1 - lam, 1 - lam]], rtol=1e-6)
  w_end, _ = ramped.label_weights(_uncertainty(), jnp.asarray(100))
  np.testing.assert_array_equal(w_end[1], [[1, 0], [0, 0]])


def _plain_ce_step(method, state, batch, rng):
  """One optimizer step on the mean cross-entropy with the noisy labels, by hand."""
  _, student_rng = jax.random.split(rng)

  def mean_ce(p):
    return jnp.mean(
      pixel_cross_entropy(
        method.logits(p, state.model_state, batch["image"], student_rng)[0], batch["label"]
      )
    )

  loss, grads = jax.value_and_grad(mean_ce)(state.params)
  return loss, state.apply_gradients(grads=grads, optimizer=method.optimizer)


def test_both_switches_off_is_plain_cross_entropy_training():
  method = PintMethod(_config("none"))
  batch = _batch()
  state = method.init(jax.random.key(0), batch)
  rng = jax.random.key(5)
  new, metrics = jax.jit(method.train_step)(state, batch, rng)
  loss, expected = _plain_ce_step(method, state, batch, rng)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
  np.testing.assert_allclose(metrics["label_weight"], 1.0)
  assert "pseudo_label_mse" not in metrics and "uncertainty" not in metrics
  assert_trees_close(new.params, expected.params)


@pytest.mark.parametrize("variant, reduces", [("pnt", True), ("pint", True), ("int", False)])
def test_a_teacher_that_agrees_with_the_labels_gives_plain_cross_entropy(variant, reduces):
  """A confident teacher that agrees with every label: u ≈ 0 < τ, so α_v = 1 everywhere.

  PNT and PINT (rescue) then trust every label and the step is plain cross-entropy training.
  INT does not: its weights are ranks, so some images are always (partly) distrusted.
  """
  method = PintMethod(
    _config(variant, model="test_pint_echo", pseudo_label_rampup_steps=0, num_passes=4)
  )
  batch = _batch(batch=4)
  batch["image"] = batch["label"][..., None].astype(np.float32)  # The echo net reads the label.
  state = method.init(jax.random.key(0), batch)
  rng = jax.random.key(6)
  new, metrics = jax.jit(method.train_step)(state, batch, rng)
  assert float(metrics["uncertainty"]) < 0.2 < float(metrics["threshold"])
  loss, expected = _plain_ce_step(method, state, batch, rng)
  if reduces:
    np.testing.assert_allclose(metrics["label_weight"], 1.0)
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
    assert_trees_close(new.params, expected.params)
  else:
    assert float(metrics["label_weight"]) < 1.0
    assert not np.allclose(float(metrics["loss"]), float(loss), rtol=1e-3)


def test_loss_is_the_weighted_sum_of_the_two_pixel_losses():
  method = PintMethod(_config("pint"))
  batch = _batch(batch=2)
  state = method.init(jax.random.key(0), batch)
  rng = jax.random.key(7)
  model_state = state.model_state
  target, _ = method.teacher_predictions(
    state.params, model_state, batch["image"], jax.random.key(8)
  )
  weights = jnp.asarray(np.random.default_rng(0).uniform(size=batch["label"].shape), jnp.float32)
  loss, (seg, pse, metrics, _) = method.loss(state.params, model_state, batch, target, weights, rng)
  logits, _ = method.logits(state.params, model_state, batch["image"], rng)
  np.testing.assert_allclose(seg, pixel_cross_entropy(logits, batch["label"]), 1e-6)
  np.testing.assert_allclose(pse, probability_mse(logits, target), 1e-6)
  assert {"loss/supervised/cross_entropy", "loss/pseudo_label/pseudo_label_mse"} <= set(metrics)
  np.testing.assert_allclose(loss, jnp.mean(weights * seg + (1 - weights) * pse), rtol=1e-6)


def test_eval_can_use_the_teacher():
  batch = _batch(batch=2)
  student = PintMethod(_config("pint"))
  state = student.init(jax.random.key(0), batch)
  other = student.init(jax.random.key(1), batch).params
  state = state.replace(extra={"teacher_params": other})
  with_teacher = _config("pint")
  with with_teacher.unlocked():
    with_teacher.eval.use_teacher = True
  for method, params in ((student, state.params), (PintMethod(with_teacher), other)):
    out = method.eval_step(state, batch, jax.random.key(0))
    expected = jnp.argmax(method.model.apply({"params": params}, batch["image"], train=False), -1)
    np.testing.assert_array_equal(out["pred"], expected)


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("pixel_weighting", "linear", "pixel_weighting"),
    ("image_weighting", "rank", "image_weighting"),
    ("combine", "sum", "combine"),
    ("num_passes", 0, "num_passes"),
    ("ema_decay", 1.0, "ema_decay"),
  ],
)
def test_bad_options_are_clear_errors(field, value, message):
  with pytest.raises(ValueError, match=message):
    PintMethod(_config("pint", **{field: value}))


# ---------------------------------------------------------------------------------------------
# Sharding, configs, end to end.


@pytest.mark.parametrize(
  "variant, model, backbone",
  [
    ("pint", "test_pint_tiny", (4,)),
    pytest.param("pint", "unet", (4, 8), marks=pytest.mark.slow),
  ],
)
def test_sharded_step_matches_single_device(devices, variant, model, backbone):
  """Two steps on an 8-device data-parallel mesh and on one device agree to float32 round-off.

  The batch comes from the real pipeline (phantom, noisy train role). The teacher's noise is
  drawn with a partitionable PRNG, so it does not depend on the sharding; the image ranks are
  taken over the global batch.
  """
  config = _config(variant, model=model, backbone=backbone, num_classes=5, num_passes=3)
  dataset = pipeline.train_dataset(config.data)
  batches = [dataset[i] for i in range(2)]  # The same host batches for both meshes.

  def run(devs):
    setup = RunSetup(config, devs)
    _, shardings = setup.state_shardings(0)
    state = setup.create_state(0)
    step = setup.compile_step(setup.stages[0], shardings)
    seen = []
    for i, local in enumerate(batches):
      batch = mesh_lib.global_batch(local, setup.mesh)
      assert len(batch["image"].sharding.device_set) == len(devs)
      state, metrics = step(state, batch, jax.random.fold_in(setup.train_rng, i))
      seen.append(jax.device_get(metrics))
    return seen, jax.device_get(state)

  sharded_metrics, sharded = run(devices)
  single_metrics, single = run(devices[:1])
  for a, b in zip(sharded_metrics, single_metrics, strict=True):
    assert set(a) >= {
      "loss",
      "uncertainty",
      "pseudo_label/pseudo_label_mse",
      "image_trust_corrupted",
    }
    assert_trees_close(a, b, rtol=1e-5, atol=1e-6)
  assert_trees_close(sharded.params, single.params, rtol=1e-5, atol=1e-6)
  assert_trees_close(sharded.extra, single.extra, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  "arg",
  ["smoke", "smoke,variant=pnt", "smoke,variant=int,noise=erosion", "smoke,variant=none", None],
)
def test_configs_build_and_trace(arg):
  config = pint_config.get_config(arg)
  setup = RunSetup(config)
  abstract, _ = setup.state_shardings(0)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), setup.example_batch)
  new_state, metrics = jax.eval_shape(setup.stages[0].train_step, abstract, batch, setup.train_rng)
  assert jax.tree.map(jnp.shape, new_state.params) == jax.tree.map(jnp.shape, abstract.params)
  teacher_shapes = jax.tree.map(jnp.shape, new_state.extra["teacher_params"])
  assert teacher_shapes == jax.tree.map(jnp.shape, abstract.params)
  assert all(m.shape == () for m in jax.tree.leaves(metrics))


@pytest.mark.slow
def test_smoke_config_trains_and_evaluates(tmp_path):
  results = trainer.train_and_evaluate(pint_config.get_config("smoke"), str(tmp_path))
  assert {"dice", "iou", "miou", "hd95", "asd", "dice/liver"} <= set(results)
  assert 0.0 <= results["dice"] <= 1.0 and 0.0 <= results["miou"] <= 1.0
  assert json.loads((tmp_path / "eval_results.json").read_text()) == results
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if "train/loss" in r]
  assert [r["step"] for r in train] == [2, 4, 6]
  assert all(np.isfinite(r["train/loss"]) for r in train)
  assert all("train/weight_noisy_pixels" in r and "train/image_trust" in r for r in train)
