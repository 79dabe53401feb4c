"""The CFR study end to end (smoke size) with a user's encoder weights, and its input checks."""

import json
import os

import pytest

from configs import cfr as cfr_config
from mlsup_jax.pipelines import spurious_study
from mlsup_jax.spurious.frozen_encoder import FrozenEncoder, save_variables


def _smoke_with_user_encoder(tmp_path):
  config = cfr_config.get_config("smoke")
  encoder = FrozenEncoder.initialised(config.encoder.model, image_shape=(32, 32, 1), seed=1)
  weights = os.path.join(tmp_path, "user_encoder.msgpack")
  save_variables(weights, encoder.variables)
  with config.unlocked():
    config.encoder_weights = weights
  return config


def test_user_encoder_weights_replace_pretraining(tmp_path):
  config = _smoke_with_user_encoder(tmp_path)
  workdir = os.path.join(tmp_path, "run")
  result = spurious_study.run_spurious_study(config, workdir)
  assert not os.path.exists(os.path.join(workdir, "encoder"))  # Nothing was pre-trained.
  assert list(result["methods"]) == list(spurious_study.METHODS)
  for report in result["methods"].values():
    assert 0 <= report["worst_group_accuracy"] <= report["average_accuracy"] <= 1
  for name in ("results.md", "results.json", "groups.png"):
    assert os.path.exists(os.path.join(workdir, name))
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["train_group_counts"] == result["train_group_counts"]
  # The per-seed summary renders from such results.
  summary = spurious_study.aggregate_seeds([result, result])
  expected = 2 * int(
    result["methods"]["CFR"]["worst_group_accuracy"]
    > result["methods"]["ERM"]["worst_group_accuracy"]
  )
  markdown = spurious_study.render_seeds_markdown(summary, [0, 1])
  assert f"CFR > ERM on worst-group accuracy: {expected} / 2" in markdown


def test_single_class_and_empty_group_are_rejected(tmp_path):
  config = _smoke_with_user_encoder(tmp_path)
  with config.unlocked():
    config.data.train.group_weights = (1.0, 1.0, 0.0, 0.0)
  with pytest.raises(ValueError, match="train split has a single class"):
    spurious_study.run_spurious_study(config, os.path.join(tmp_path, "one_class"))
  config = _smoke_with_user_encoder(tmp_path)
  with config.unlocked():
    config.data.val.group_weights = (1.0, 1.0, 1.0, 0.0)
  with pytest.raises(ValueError, match="val split has an empty group"):
    spurious_study.run_spurious_study(config, os.path.join(tmp_path, "empty_group"))


def test_mismatched_user_weights_are_rejected(tmp_path):
  config = _smoke_with_user_encoder(tmp_path)
  with config.unlocked():
    config.encoder.model.base_width = 8
  with pytest.raises(ValueError, match="do not match the model"):
    spurious_study.run_spurious_study(config, os.path.join(tmp_path, "mismatch"))
