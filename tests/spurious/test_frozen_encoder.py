"""The frozen encoder: weights round-trip, shape checks, and the embedding cache."""

import os

import ml_collections
import numpy as np
import pytest

from mlsup_jax.data.sources import build_source
from mlsup_jax.spurious.frozen_encoder import FrozenEncoder, save_variables

MODEL = ml_collections.ConfigDict(
  {"name": "cnn_classifier", "num_classes": 4, "base_width": 4, "depth": 2}
)
SOURCE = {
  "name": "phantom_spurious_radiograph",
  "split": "val",
  "num_cases": 6,
  "seed": 0,
  "image_size": 32,
  "group_weights": (0.25, 0.25, 0.25, 0.25),
}


def test_saved_encoder_round_trips(tmp_path):
  encoder = FrozenEncoder.initialised(MODEL, image_shape=(32, 32, 1), seed=3)
  path = os.path.join(tmp_path, "encoder.msgpack")
  save_variables(path, encoder.variables)
  loaded = FrozenEncoder.from_file(MODEL, path, image_shape=(32, 32, 1))
  images = np.random.default_rng(0).random((5, 32, 32, 1)).astype(np.float32)
  np.testing.assert_array_equal(encoder.features(images), loaded.features(images))
  assert loaded.fingerprint == encoder.fingerprint
  assert encoder.features(images).shape == (5, 8)


def test_weights_of_another_architecture_are_rejected(tmp_path):
  other = FrozenEncoder.initialised({**MODEL.to_dict(), "base_width": 8}, image_shape=(32, 32, 1))
  path = os.path.join(tmp_path, "other.msgpack")
  save_variables(path, other.variables)
  with pytest.raises(ValueError, match=r"has shape .* the model expects"):
    FrozenEncoder.from_file(MODEL, path, image_shape=(32, 32, 1))
  deeper = FrozenEncoder.initialised({**MODEL.to_dict(), "depth": 3}, image_shape=(32, 32, 1))
  save_variables(path, deeper.variables)
  with pytest.raises(ValueError, match="entries the model lacks"):
    FrozenEncoder.from_file(MODEL, path, image_shape=(32, 32, 1))


def test_missing_or_garbage_file(tmp_path):
  with pytest.raises(FileNotFoundError):
    FrozenEncoder.from_file(MODEL, os.path.join(tmp_path, "none.msgpack"), (32, 32, 1))
  garbage = os.path.join(tmp_path, "garbage.msgpack")
  with open(garbage, "wb") as f:
    f.write(b"\xc1 not msgpack")
  with pytest.raises(ValueError, match="not a Flax msgpack"):
    FrozenEncoder.from_file(MODEL, garbage, (32, 32, 1))


def test_embed_caches_and_keeps_groups(tmp_path):
  encoder = FrozenEncoder.initialised(MODEL, image_shape=(32, 32, 1))
  source = build_source(SOURCE)
  first = encoder.embed(source, cache_dir=str(tmp_path), source_config=SOURCE, batch_size=4)
  assert first["features"].shape == (6, 8)
  assert first["groups"].tolist() == source.groups.tolist()
  assert first["labels"].tolist() == source.findings.tolist()
  files = os.listdir(tmp_path)
  assert len(files) == 1 and files[0].startswith(encoder.fingerprint)
  # Batch size 4 over 6 cases pads the last batch: results equal one unpadded pass.
  images = np.stack([source[i]["image"] for i in range(6)])
  np.testing.assert_allclose(first["features"], encoder.features(images, 6), rtol=1e-5, atol=1e-6)
  again = encoder.embed(source, cache_dir=str(tmp_path), source_config=SOURCE)
  np.testing.assert_array_equal(first["features"], again["features"])
  with pytest.raises(ValueError, match="source_config"):
    encoder.embed(source, cache_dir=str(tmp_path))
