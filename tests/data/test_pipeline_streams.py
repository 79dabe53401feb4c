"""Extra data streams (`config.data.streams`): zipped sub-batches, seeding, resume, errors."""

from __future__ import annotations

import ml_collections
import numpy as np
import pytest

from mlsup_jax.data import pipeline
from mlsup_jax.data.sources import DATASETS
from mlsup_jax.data.validation import DataError

SIZE = 8


class IndexedSource:
  """`num_examples` examples whose `index` key tells them apart (offset by `start`)."""

  def __init__(self, num_examples: int = 10, start: int = 0, nan: bool = False):
    self.num_examples, self.start, self.nan = num_examples, start, nan

  def __len__(self):
    return self.num_examples

  def __getitem__(self, index):
    value = self.start + index
    image = np.full((SIZE, SIZE, 1), np.nan if self.nan else value / 100.0, np.float32)
    label = np.zeros((SIZE, SIZE), np.int32)
    label[: value % SIZE] = 1
    return {"image": image, "label": label, "index": np.int32(value)}


@pytest.fixture(autouse=True)
def indexed_dataset():
  DATASETS.register("test_indexed", IndexedSource)
  yield
  DATASETS.unregister("test_indexed")


def _data_config(streams=None, **overrides) -> ml_collections.ConfigDict:
  fields = {
    "train_source": {"name": "test_indexed", "num_examples": 10},
    "batch_size": 4,
    "seed": 0,
    "spatial_dims": 2,
    "num_classes": 2,
    "require_label": True,
    "train_transforms": ("random_brightness", "normalize"),
    "brightness_delta": 0.2,
    "norm_mean": 0.5,
    "norm_std": 0.25,
    "worker_count": 0,
    "read_threads": 1,
  }
  fields.update(overrides)
  config = ml_collections.ConfigDict(fields)
  if streams is not None:
    config.streams = ml_collections.ConfigDict(streams)
  config.lock()
  return config


META = {"meta": {"name": "test_indexed", "num_examples": 3, "start": 100}}


def _batches(config, n):
  iterator = pipeline.train_iterator(pipeline.train_dataset(config), config)
  return [next(iterator) for _ in range(n)]


def test_each_example_carries_one_example_of_every_stream():
  batches = _batches(_data_config(META), 6)
  for batch in batches:
    assert batch["image"].shape == (4, SIZE, SIZE, 1)
    meta = batch["meta"]
    assert set(meta) == {"image", "label", "index"}
    assert meta["image"].shape == (4, SIZE, SIZE, 1) and meta["label"].shape == (4, SIZE, SIZE)
    assert np.all(batch["index"] < 10) and np.all(meta["index"] >= 100)
  # The meta stream cycles through its 3 examples: every 3 consecutive positions hold each once.
  meta_order = np.concatenate([b["meta"]["index"] for b in batches])
  for start in range(0, len(meta_order) - 2, 3):
    assert sorted(meta_order[start : start + 3].tolist()) == [100, 101, 102]


def test_streams_get_the_training_transforms_with_their_own_seeds():
  source = {"name": "test_indexed", "num_examples": 10, "start": 1}  # No zero image.
  batch = _batches(_data_config(META, train_source=source), 1)[0]

  def brightness_factors(sub_batch):
    # Undo normalize, divide by the source value: the random brightness factor of each example.
    values = (sub_batch["index"][:, None] / 100.0).astype(np.float32)
    return (sub_batch["image"].reshape(4, -1) * 0.25 + 0.5) / values

  main, meta = brightness_factors(batch), brightness_factors(batch["meta"])
  for factors in (main, meta):
    np.testing.assert_allclose(factors, factors[:, :1].repeat(SIZE * SIZE, 1), rtol=1e-5)
    assert np.all(np.abs(factors - 1.0) <= 0.2 + 1e-5)
  assert not np.allclose(main[:, 0], meta[:, 0])  # Independent draws, not the same seed.


def test_training_stream_is_unchanged_by_adding_a_stream():
  plain = _batches(_data_config(), 5)
  with_meta = _batches(_data_config(META), 5)
  for a, b in zip(plain, with_meta, strict=True):
    assert set(b) == set(a) | {"meta"}
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_resumed_iterator_continues_with_the_same_pairs():
  config = _data_config(META)
  dataset = pipeline.train_dataset(config)
  iterator = pipeline.train_iterator(dataset, config)
  for _ in range(3):
    next(iterator)
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(3)]
  resumed = pipeline.train_iterator(pipeline.train_dataset(config), config)
  resumed.set_state(state)
  for a in expected:
    b = next(resumed)
    np.testing.assert_array_equal(a["index"], b["index"])
    np.testing.assert_array_equal(a["meta"]["index"], b["meta"]["index"])
    np.testing.assert_array_equal(a["meta"]["image"], b["meta"]["image"])


def test_two_streams_are_zipped_under_their_names():
  streams = {**META, "extra": {"name": "test_indexed", "num_examples": 5, "start": 200}}
  batch = _batches(_data_config(streams), 1)[0]
  assert np.all(batch["meta"]["index"] >= 100) and np.all(batch["meta"]["index"] < 200)
  assert np.all(batch["extra"]["index"] >= 200)


def test_stream_named_like_an_example_key_is_a_clear_error():
  config = _data_config({"label": {"name": "test_indexed", "num_examples": 3}})
  with pytest.raises(DataError, match="collides"):
    pipeline.train_dataset(config)[0]


def test_stream_examples_are_validated():
  config = _data_config({"meta": {"name": "test_indexed", "num_examples": 3, "nan": True}})
  with pytest.raises(DataError, match="NaN"):
    pipeline.train_dataset(config)[0]
