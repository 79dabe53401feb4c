"""Config resolution: sources replaced by name, models swapped by name, defaults, clear errors."""

from __future__ import annotations

import pytest

from configs import mcpm, segmentation
from mlsup_jax.cli import load_config
from mlsup_jax.core.config_resolution import resolve_config, source_sections


def test_source_sections_are_found_nested_and_left_open():
  config = mcpm.get_config("smoke")
  paths = source_sections(config)
  assert {"data.train_source", "data.eval_source", "data.streams.meta.source"} <= set(paths)
  # Wrappers' bases are sources too (noisy_labels → relabel → phantom).
  assert "data.train_source.base.base" in paths
  config.data.train_source.new_field = 1  # open for the command line
  with pytest.raises(AttributeError, match="locked"):
    config.data.new_field = 1  # the rest is locked


def test_a_new_source_name_replaces_the_whole_section_and_fills_its_defaults():
  config = load_config(
    [
      "--config=configs/mcpm.py:smoke",
      "--config.data.train_source.name=nifti_folder",
      "--config.data.train_source.root=/data/x",
      "--config.data.streams.meta.source.name=image_folder",
      "--config.data.streams.meta.source.root=/data/y",
      "--config.data.streams.meta.source.grayscale=False",
    ]
  )
  assert config.data.train_source.to_dict() == {
    "name": "nifti_folder",
    "root": "/data/x",
    "image_dir": "images",
    "label_dir": "labels",
  }
  meta = config.data.streams.meta.source.to_dict()
  assert meta["grayscale"] is False and meta["root"] == "/data/y" and "base" not in meta
  assert config.is_locked and config.data.train_source.is_locked


def test_unchanged_sources_keep_their_fields_and_gain_their_defaults():
  config = resolve_config(segmentation.get_config("smoke"))
  train = config.data.train_source
  assert train.name == "phantom_abdomen" and train.num_cases == 16
  assert "tumour_fraction" in train  # a default of the phantom, now recorded
  assert resolve_config(config).to_dict() == config.to_dict()  # idempotent


@pytest.mark.parametrize(
  "args, message",
  [
    (["--config.data.train_source.roots=/x"], r"no field\(s\) \['roots'\]"),
    (["--config.data.train_source.name=nnunet_raw"], r"needs field\(s\) \['root'\]"),
    (["--config.model.featuers=(4, 8)"], r"model 'unet' has no field\(s\) \['featuers'\]"),
  ],
)
def test_misspelt_or_missing_fields_are_named(args, message):
  with pytest.raises(ValueError, match=message):
    load_config(["--config=configs/segmentation.py:smoke", *args])


def test_a_new_model_name_keeps_the_fields_the_network_also_has():
  config = load_config(["--config=configs/segmentation.py:smoke", "--config.model.name=scunet"])
  assert config.model.to_dict() == {
    "name": "scunet",
    "num_classes": 5,
    "dropout_rate": 0.0,
    "dtype": "float32",
  }
  # A field only the new network has can be given on the same command line.
  config = load_config(
    [
      "--config=configs/segmentation.py:smoke",
      "--config.model.name=kmax",
      "--config.model.num_queries=8",
      "--config.model.backbone_features=(8, 16)",
      "--config.model.blocks_per_scale=(1,)",
    ]
  )
  assert config.model.num_queries == 8 and "features" not in config.model


def test_a_field_outside_the_open_sections_is_still_an_error():
  with pytest.raises(KeyError, match="locked"):
    load_config(["--config=configs/segmentation.py:smoke", "--config.optimizer.lr=1"])
