"""TEND, CVAD and the reconstruction baselines: stages, transitions, sharding, configs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cvad as cvad_config
from configs import reconstruction_detector as recon_config
from configs import tend as tend_config
from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core.run_setup import RunSetup, enter_stage
from mlsup_jax.data import pipeline


def _sgd(config):
  sections = (
    [config.optimizer.generator, config.optimizer.discriminator]
    if "generator" in config.optimizer
    else [config.optimizer]
  )
  with config.unlocked():
    config.data.batch_size = 8  # One example per fake device.
    for section in sections:
      section.name, section.learning_rate = "sgd", 0.05


def _configs():
  return {
    "tend": tend_config.get_config("smoke"),
    "cvad": cvad_config.get_config("smoke"),
    "ae": recon_config.get_config("smoke"),
    "vae": recon_config.get_config("smoke,network=vae"),
  }


@pytest.mark.parametrize(
  "name, option",
  [("tend", ""), ("tend", "dataset=pydicom"), ("cvad", "rest_vs_one"), ("ae", ""), ("vae", "")],
)
def test_every_config_builds_and_every_stage_traces(name, option):
  module = {"tend": tend_config, "cvad": cvad_config, "ae": recon_config, "vae": recon_config}
  arg = ",".join(filter(None, ["network=vae" if name == "vae" else "", option]))
  config = module[name].get_config(arg or None)
  setup = RunSetup(config)
  for index, stage in enumerate(setup.stages):
    abstract, _ = setup.state_shardings(index)
    batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), setup.example_batch)
    new_state, metrics = jax.eval_shape(stage.train_step, abstract, batch, setup.train_rng)
    assert jax.tree.map(lambda a: a.shape, new_state.params) == jax.tree.map(
      lambda a: a.shape, abstract.params
    )
    assert all(m.shape == () for m in jax.tree.leaves(metrics)), stage.name


@pytest.mark.slow
@pytest.mark.parametrize("name, index", [("tend", 3), ("cvad", 0), ("cvad", 1), ("vae", 0)])
def test_sharded_steps_match_single_device(devices, name, index):
  """Two SGD steps of a stage on 8 fake devices and on one agree to round-off.

  TEND's margin stage (BCE + margin on 2B images, the centre from the state) covers its other
  stages' patterns; CVAD's two stages include the sampled latents and the perturbed decodings.
  """
  config = _configs()[name]
  _sgd(config)
  batches = [pipeline.train_dataset(config.data)[i] for i in range(2)]

  def run(devs, index):
    setup = RunSetup(config, devs)
    _, shardings = setup.state_shardings(index)
    state = setup.create_state(index)
    step = setup.compile_step(setup.stages[index], shardings)
    seen = []
    for i, local in enumerate(batches):
      batch = mesh_lib.global_batch(local, setup.mesh)
      state, metrics = step(state, batch, jax.random.fold_in(setup.train_rng, i))
      seen.append({k: float(v) for k, v in metrics.items()})
    return seen, jax.device_get((state.params, state.extra))

  sharded, sharded_state = run(devices, index)
  single, single_state = run(devices[:1], index)
  for a, b in zip(sharded, single, strict=True):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_allclose(a[key], b[key], rtol=2e-5, atol=1e-6, err_msg=key)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
    sharded_state,
    single_state,
  )


def test_tend_stage_transitions_copy_the_encoder_fix_the_centre_and_freeze_the_rest():
  config = tend_config.get_config("smoke")
  with config.unlocked():
    config.model.freeze_encoder = True
  setup = RunSetup(config, jax.devices()[:1])
  method, stages = setup.method, setup.stages
  assert [s.name for s in stages] == ["autoencoder", "warmup", "centre", "margin"]
  state = setup.create_state(0)
  batch = mesh_lib.global_batch(setup.example_local, setup.mesh)
  ae_before = jax.device_get(state.params["autoencoder"])
  # Stage 1 moves only the auto-encoder.
  cls_before = jax.device_get(state.params["classifier"])
  state, _ = jax.jit(stages[0].train_step)(state, batch, setup.train_rng)
  assert not np.allclose(
    jax.tree.leaves(state.params["autoencoder"])[0], jax.tree.leaves(ae_before)[0]
  )
  jax.tree.map(
    np.testing.assert_array_equal, jax.device_get(state.params["classifier"]), cls_before
  )
  # Warm-up starts from the auto-encoder's encoder; with freeze_encoder it stays there.
  state = enter_stage(state, stages[1])
  trained_encoder = jax.device_get(state.params["autoencoder"]["encoder"])
  jax.tree.map(
    np.testing.assert_array_equal,
    jax.device_get(state.params["classifier"]["encoder"]),
    trained_encoder,
  )
  head_before = jax.device_get(state.params["classifier"]["features"])
  state, metrics = jax.jit(stages[1].train_step)(state, batch, setup.train_rng)
  assert "loss/warmup/tend_margin" not in metrics  # BCE only during warm-up.
  jax.tree.map(
    np.testing.assert_array_equal,
    jax.device_get(state.params["classifier"]["encoder"]),
    trained_encoder,
  )
  assert not np.allclose(state.params["classifier"]["features"]["kernel"], head_before["kernel"])
  # The centre pass sums the features of the ID images without touching any parameter.
  params_before = jax.device_get(state.params)
  state, _ = jax.jit(stages[2].train_step)(state, batch, setup.train_rng)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params), params_before)
  outputs = method.classifier.apply(
    {"params": state.params["classifier"], **state.model_state["classifier"]},
    batch["image"],
    train=False,
  )
  np.testing.assert_allclose(
    state.extra["centre_sum"], jnp.sum(outputs["features"], 0), rtol=1e-5, atol=1e-6
  )
  assert float(state.extra["centre_count"]) == batch["image"].shape[0]
  # The margin stage fixes O = mean c (ε-trick) and trains BCE + margin.
  state = enter_stage(state, stages[3])
  mean = np.asarray(outputs["features"]).mean(0)
  expected = np.where(np.abs(mean) < 0.1, np.where(mean < 0, -0.1, 0.1), mean)
  np.testing.assert_allclose(state.extra["centre"], expected, rtol=1e-5, atol=1e-6)
  state, metrics = jax.jit(stages[3].train_step)(state, batch, setup.train_rng)
  assert {"loss/classifier/classification_bce", "loss/classifier/tend_margin"} <= set(metrics)


def test_cvad_discriminator_stage_leaves_the_generator_unchanged():
  config = cvad_config.get_config("smoke")
  setup = RunSetup(config, jax.devices()[:1])
  state = setup.create_state(1)
  batch = mesh_lib.global_batch(setup.example_local, setup.mesh)
  generator = jax.device_get((state.params["generator"], state.model_state["generator"]))
  step = jax.jit(setup.stages[1].train_step)
  for i in range(2):
    state, metrics = step(state, batch, jax.random.fold_in(setup.train_rng, i))
  jax.tree.map(
    np.testing.assert_array_equal,
    jax.device_get((state.params["generator"], state.model_state["generator"])),
    generator,
  )
  assert np.isfinite(float(metrics["loss/discriminator/discriminator_bce"]))
  outputs = jax.jit(setup.method.eval_step)(state, batch, setup.eval_rng)
  assert set(outputs) == {"cvae_loss", "reconstruction_error", "probability", "ood", "class_id"}
  assert all(v.shape == (batch["image"].shape[0],) for v in outputs.values())
