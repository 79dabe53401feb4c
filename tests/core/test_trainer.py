"""The spine end to end: artifacts, sharding equivalence, kill/resume, NaN handling, bad flags."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from one_device_run import one_device_env

from configs import maxquery as maxquery_config
from configs import scunet as scunet_config
from mlsup_jax import losses
from mlsup_jax.core import evaluation, trainer
from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core.run_setup import RunSetup
from mlsup_jax.data import pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _params_at(workdir, step):
  """Restores the raw checkpointed state of `step` as numpy (no target structure needed)."""
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  with ocp.StandardCheckpointer() as checkpointer:
    return checkpointer.restore(path)


def _launch(script, workdir, *overrides, config="configs/scunet.py:smoke"):
  return [sys.executable, script, f"--config={config}", f"--workdir={workdir}", *overrides]


@pytest.mark.slow
def test_train_and_evaluate_writes_a_complete_workdir(tmp_path):
  config = scunet_config.get_config("smoke")
  results = trainer.train_and_evaluate(config, str(tmp_path))
  for name in ("config.json", "metrics.jsonl", "eval_results.json", "scunet_predictions.png"):
    assert (tmp_path / name).exists(), name
  assert os.listdir(tmp_path / "tensorboard"), "no TensorBoard event file"
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train_steps = [r["step"] for r in records if "train/loss" in r]
  assert train_steps == list(range(4, 25, 4))
  assert all(np.isfinite(r["train/loss"]) for r in records if "train/loss" in r)
  assert any("eval/dice" in r for r in records)
  assert json.loads((tmp_path / "config.json").read_text())["method"] == "scunet"
  assert results == json.loads((tmp_path / "eval_results.json").read_text())
  assert set(results) >= {"dice", "iou", "precision", "recall", "hd95", "asd", "r2_TAM100"}
  assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()) == [16, 24]
  # launch.evaluate's path: restoring the newest checkpoint gives the same evaluation.
  assert evaluation.evaluate_checkpoint(config, str(tmp_path)) == pytest.approx(results)


def _smoke_config(name: str):
  """`scunet` or a `configs/maxquery.py` variant, in its smoke size with a batch of 8."""
  if name == "scunet":
    return scunet_config.get_config("smoke")
  config = maxquery_config.get_config(f"smoke,variant={name}")
  with config.unlocked():
    config.data.batch_size = 8  # One example per fake device.
  return config


@pytest.mark.parametrize(
  "config_name, optimizer",
  [("scunet", "sgd"), ("scunet", "adamw"), ("maxquery", "sgd"), ("unet", "sgd")],
)
def test_sharded_step_matches_single_device(devices, config_name, optimizer):
  """The same three steps on an 8-device data-parallel mesh and on one device.

  With SGD every step agrees to float32 round-off — for the mask transformer too, whose batch
  norms reduce over the global batch and whose k-means step takes a hard argmax. With Adam(W)
  the first loss agrees just as tightly, but Adam's first updates are ≈ lr·sign(g): gradients
  that differ only in their reduction order (batch statistics and weight gradients are summed
  across 8 shards vs one) can flip the sign of near-zero components, so later losses agree to
  ~1e-4 relative.
  """
  config = _smoke_config(config_name)
  with config.unlocked():
    config.optimizer.name = optimizer
    config.optimizer.learning_rate = 0.05 if optimizer == "sgd" else 1e-3
    config.optimizer.grad_clip_norm = 0.0
  batches = [pipeline.train_dataset(config.data)[i] for i in range(3)]  # Same host batches.

  def run(devs):
    setup = RunSetup(config, devs)
    _, shardings = setup.state_shardings(0)
    state = setup.create_state(0)
    step = setup.compile_step(setup.stages[0], shardings)
    losses_seen = []
    for i, local in enumerate(batches):
      batch = mesh_lib.global_batch(local, setup.mesh)
      assert len(batch["image"].sharding.device_set) == len(devs)
      state, metrics = step(state, batch, jax.random.fold_in(setup.train_rng, i))
      losses_seen.append(float(metrics["loss"]))
    return np.asarray(losses_seen), jax.device_get(state.params)

  sharded_losses, sharded_params = run(devices)
  single_losses, single_params = run(devices[:1])
  np.testing.assert_allclose(sharded_losses[0], single_losses[0], rtol=1e-6)
  if optimizer == "sgd":
    np.testing.assert_allclose(sharded_losses, single_losses, rtol=1e-6)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      sharded_params,
      single_params,
    )
  else:
    np.testing.assert_allclose(sharded_losses, single_losses, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(
  "script, config, one_device",
  [
    ("slow_save_launch.py", "configs/scunet.py:smoke", False),
    # A labelled stream of 2 and an unlabelled one of 6 with a strong view, and an EMA teacher.
    ("two_stream_launch.py", "tests/core/two_stream_config.py", True),
  ],
  ids=["scunet", "two_streams"],
)
def test_sigkill_then_same_command_reproduces_uninterrupted_run(
  tmp_path, script, config, one_device
):
  env = one_device_env() if one_device else dict(os.environ)
  env.update(PYTHONUNBUFFERED="1", PYTHONPATH=REPO)
  script = os.path.join(REPO, "tests", "core", script)
  reference, killed = tmp_path / "reference", tmp_path / "killed"
  run = subprocess.run(
    _launch(script, reference, config=config), cwd=REPO, env=env, capture_output=True, text=True
  )
  assert run.returncode == 0, run.stderr[-3000:]

  process = subprocess.Popen(
    _launch(script, killed, config=config),
    cwd=REPO,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
  )
  first_checkpoint = killed / "checkpoints" / "8"
  deadline = time.time() + 300
  while not first_checkpoint.exists() and process.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert process.poll() is None, "training ended before it could be killed"
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (killed / "eval_results.json").exists()
  assert not (killed / "checkpoints" / "24").exists()

  resumed = subprocess.run(
    _launch(script, killed, config=config), cwd=REPO, env=env, capture_output=True, text=True
  )
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resumed from step" in resumed.stderr
  expected, actual = _params_at(reference, 24), _params_at(killed, 24)
  jax.tree.map(np.testing.assert_array_equal, expected, actual)
  ref_eval = json.loads((reference / "eval_results.json").read_text())
  assert json.loads((killed / "eval_results.json").read_text()) == ref_eval

  # The logged metrics after the resume are the uninterrupted run's, step for step.
  def rows(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if "train/loss" in r}

  reference_rows, resumed_rows = rows(reference), rows(killed)
  for step in (12, 16, 20, 24):
    assert resumed_rows[step] == reference_rows[step], step


def _nan_loss(*, outputs, batch):
  del batch
  value = jnp.sum(outputs["logits"]) * jnp.nan
  return value, {}


@pytest.mark.slow
def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
  config = scunet_config.get_config("smoke")
  with config.unlocked():
    config.train.num_steps = 8
  trainer.train_and_evaluate(config, str(tmp_path))  # A good checkpoint at step 8.

  losses.LOSSES.register("test_nan", losses.LossTerm(_nan_loss, ("logits",)))
  try:
    config = scunet_config.get_config("smoke")  # Now lists the new term.
    config.train.num_steps = 24
    config.loss.soft_dice.weight = 0.0
    config.loss.test_nan.weight = 1.0
    with pytest.raises(FloatingPointError, match=r"last good checkpoint is step 8"):
      trainer.train_and_evaluate(config, str(tmp_path))
  finally:
    losses.LOSSES.unregister("test_nan")
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert steps == [8]
  restored = _params_at(tmp_path, 8)
  assert all(
    np.all(np.isfinite(x))
    for x in jax.tree.leaves(restored)
    if np.issubdtype(np.asarray(x).dtype, np.floating)
  )


def test_unknown_config_override_is_one_clear_error(tmp_path):
  command = [
    sys.executable,
    "-m",
    "launch.train",
    "--config=configs/scunet.py:smoke",
    f"--workdir={tmp_path}",
    "--config.optimizer.learning_rat=1e-4",
  ]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
  assert result.returncode != 0
  assert "learning_rat" in result.stderr


def test_unknown_config_option_names_the_accepted_ones():
  with pytest.raises(ValueError, match="smoke"):
    scunet_config.get_config("smok")
