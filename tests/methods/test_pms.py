"""PMS: the bank as carried state (resume, sharding, frozen in stage 2) and bad input."""

import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import pms as pms_config
from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core import trainer
from mlsup_jax.core.run_setup import RunSetup
from mlsup_jax.data import pipeline
from mlsup_jax.data.phantoms.finding_statistics import FINDINGS, load_pattern_table
from mlsup_jax.methods.pms import PmsMethod
from mlsup_jax.retrieval import memory_bank


def _state_at(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  with ocp.StandardCheckpointer() as checkpointer:
    return checkpointer.restore(path)


def _smoke(**changes):
  config = pms_config.get_config("smoke")
  with config.unlocked():
    # Two one-block stages instead of ResNet-18's 2-2-2-2: the bank, not the backbone, is tested
    # here, and the compile is 4× shorter.
    config.model.stage_sizes = (1, 1)
    config.train.checkpoint_every = 1
    config.train.keep_checkpoints = 10
    config.eval.save_figures = False
    for key, value in changes.items():
      target = config
      *path, last = key.split(".")
      for name in path:
        target = target[name]
      target[last] = value
  return config


@pytest.mark.slow
def test_resume_across_the_stage_boundary_is_bit_for_bit_and_the_bank_freezes(tmp_path):
  config = _smoke()
  last = config.train.warmup_steps + config.train.pms_steps  # 3 + 2
  reference = str(tmp_path / "reference")
  results = trainer.train_and_evaluate(config, reference)
  assert results["pms_weighted/num_queries"] == 8.0

  # The bank fills during warm-up only; stage 2's proxies are its voted means.
  warm, final = _state_at(reference, 3), _state_at(reference, last)
  for key in ("bank", "count", "pointer"):
    np.testing.assert_array_equal(warm["extra"]["memory"][key], final["extra"]["memory"][key])
  assert warm["extra"]["memory"]["count"].sum() > 0
  memory = memory_bank.ClassMemory(**{k: np.asarray(v) for k, v in warm["extra"]["memory"].items()})
  proxies, has = memory_bank.proxies(memory)
  np.testing.assert_allclose(final["extra"]["proxies"], np.asarray(proxies), rtol=1e-6)
  np.testing.assert_array_equal(final["extra"]["has_proxy"], np.asarray(has))

  # Interrupted after step 2 (mid warm-up): the rerun crosses the boundary and ends identical.
  resumed = str(tmp_path / "resumed")
  shutil.copytree(reference, resumed)
  os.remove(os.path.join(resumed, "eval_results.json"))
  for step in range(3, last + 1):
    shutil.rmtree(os.path.join(resumed, "checkpoints", str(step)))
  assert trainer.train_and_evaluate(config, resumed) == results
  jax.tree.map(np.testing.assert_array_equal, _state_at(resumed, last), final)


def test_warmup_step_with_the_bank_is_the_same_on_8_devices_and_on_1(devices):
  config = _smoke()
  with config.unlocked():
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.05
  batches = [pipeline.train_dataset(config.data)[i] for i in range(2)]

  def run(devs):
    setup = RunSetup(config, devs)
    _, shardings = setup.state_shardings(0)
    state = setup.create_state(0)
    step = setup.compile_step(setup.stages[0], shardings)
    for i, local in enumerate(batches):
      batch = mesh_lib.global_batch(local, setup.mesh)
      state, _ = step(state, batch, jax.random.fold_in(setup.train_rng, i))
    return jax.device_get(state.extra["memory"])

  sharded, single = run(devices), run(devices[:1])
  np.testing.assert_array_equal(sharded["count"], single["count"])
  np.testing.assert_array_equal(sharded["pointer"], single["pointer"])
  # Same slots, same embeddings (up to the reduction order of the sharded batch norms).
  np.testing.assert_allclose(sharded["bank"], single["bank"], rtol=1e-4, atol=1e-5)


def test_a_finding_no_training_image_has_warns_and_gets_no_proxy(tmp_path, caplog):
  patterns, counts = load_pattern_table()
  fracture = FINDINGS.index("Fracture")
  keep = patterns[:, fracture] == 0
  table = tmp_path / "no_fracture.csv"
  with open(table, "w") as f:
    f.write("# test table without Fracture\npattern,count\n")
    for p, c in zip(patterns[keep], counts[keep], strict=True):
      f.write("".join(map(str, p)) + f",{c}\n")
  config = _smoke()
  with config.unlocked():
    for source in (config.data.train_source, config.data.eval_source.queries,
                   config.data.eval_source.database):  # fmt: skip
      source.table = str(table)
  with caplog.at_level("WARNING"):
    method = PmsMethod(config)
  assert "Fracture" in caplog.text
  assert method.prevalence[fracture] == 0.0
  workdir = str(tmp_path / "run")
  results = trainer.train_and_evaluate(config, workdir)
  state = _state_at(workdir, config.train.warmup_steps + config.train.pms_steps)
  assert not state["extra"]["has_proxy"][fracture]
  assert np.all(np.isfinite([v for v in results.values()]))
  assert "auc/Fracture" not in results  # one label value in the evaluation set: left out


def test_bad_configs_are_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="warmup_steps"):
    PmsMethod(_smoke(**{"train.warmup_steps": 0}))
  with pytest.raises(ValueError, match="num_classes"):
    PmsMethod(_smoke(**{"model.num_classes": 13}))
  with pytest.raises(ValueError, match="memory.size"):
    PmsMethod(_smoke(**{"memory.size": 0}))
  with pytest.raises(ValueError, match="Unknown method"):
    pms_config.get_config("method=hashing")
