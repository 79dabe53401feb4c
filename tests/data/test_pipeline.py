"""Tests of mlsup_jax.data.pipeline on a small in-test dataset registered in DATASETS."""

from __future__ import annotations

import grain
import ml_collections
import numpy as np
import pytest

from mlsup_jax.data import pipeline
from mlsup_jax.data.sources import DATASETS
from mlsup_jax.data.validation import DataError

SIZE = 16
MEAN, STD = 0.5, 0.25


class ToySource:
  """`num_examples` deterministic examples: `image [16, 16, 1]`, `label [16, 16]`, `index`."""

  def __init__(self, num_examples: int = 10, seed: int = 0, nan_index: int | None = None):
    self.num_examples = num_examples
    self.seed = seed
    self.nan_index = nan_index

  def __len__(self):
    return self.num_examples

  def __getitem__(self, index):
    rng = np.random.default_rng((self.seed, index))
    image = rng.uniform(size=(SIZE, SIZE, 1)).astype(np.float32)
    if index == self.nan_index:
      image[3, 4, 0] = np.nan
    label = (image[..., 0] > 0.5).astype(np.int32)
    return {"image": image, "label": label, "index": np.int32(index)}


@pytest.fixture(autouse=True)
def toy_dataset():
  DATASETS.register("test_toy", ToySource)
  yield
  DATASETS.unregister("test_toy")


def _data_config(**overrides) -> ml_collections.ConfigDict:
  """The structure of `configs/scunet.py`'s `config.data`, on the toy source."""
  toy = {"name": "test_toy", "num_examples": 10, "seed": 0}
  fields = {
    "train_source": {**toy},
    "eval_source": {**toy, "seed": 1, "num_examples": 6},
    "batch_size": 4,
    "seed": 0,
    "spatial_dims": 2,
    "num_classes": 2,
    "require_label": True,
    "train_transforms": ("random_dihedral", "random_brightness", "normalize", "replicate_channels"),
    "eval_transforms": ("normalize", "replicate_channels"),
    "norm_mean": MEAN,
    "norm_std": STD,
    "brightness_delta": 0.2,
    "in_channels": 3,
    "crop_size": 8,
    "worker_count": 0,
    "read_threads": 1,
  }
  fields.update(overrides)
  config = ml_collections.ConfigDict(fields)
  config.lock()
  return config


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b, strict=True):
    assert set(x) == set(y)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])


def _iterator(data_config):
  return pipeline.train_iterator(pipeline.train_dataset(data_config), data_config)


def test_train_batches_have_the_right_shapes_and_contents():
  batches = _take(_iterator(_data_config()), 5)
  for batch in batches:
    assert batch["image"].shape == (4, SIZE, SIZE, 3)
    assert batch["image"].dtype == np.float32
    assert batch["label"].shape == (4, SIZE, SIZE)
    assert batch["index"].shape == (4,)
    # Channels are copies of the one source channel.
    np.testing.assert_array_equal(batch["image"][..., 0], batch["image"][..., 2])
    assert set(np.unique(batch["label"])) <= {0, 1}
  # Each epoch of 10 examples is a permutation (the last partial batch of the epoch is not
  # dropped: the dataset repeats before batching, so batches straddle epochs).
  indices = np.concatenate([b["index"] for b in batches])
  np.testing.assert_array_equal(np.sort(indices[:10]), np.arange(10))
  np.testing.assert_array_equal(np.sort(indices[10:20]), np.arange(10))
  assert not np.array_equal(indices[:10], np.arange(10))  # shuffled
  assert not np.array_equal(indices[:10], indices[10:20])  # re-shuffled each epoch
  # grain's shuffle order exactly (data/epoch_shuffle.py computes it one epoch at a time).
  grain_order = grain.MapDataset.range(10).shuffle(seed=0).repeat(None)
  assert indices.tolist() == [grain_order[i] for i in range(len(indices))]


def test_train_augmentation_keeps_label_aligned_and_image_normalized():
  source = ToySource(10, 0)
  batch = next(_iterator(_data_config(train_transforms=("random_dihedral",))))
  for image, label, index in zip(batch["image"], batch["label"], batch["index"], strict=True):
    np.testing.assert_array_equal(label, (image[..., 0] > 0.5).astype(np.int32))
    np.testing.assert_array_equal(
      np.sort(image.ravel()), np.sort(source[int(index)]["image"].ravel())
    )
  batch = next(_iterator(_data_config(train_transforms=("normalize",))))
  for image, index in zip(batch["image"], batch["index"], strict=True):
    np.testing.assert_allclose(image, (source[int(index)]["image"] - MEAN) / STD, rtol=1e-6)


def test_same_seed_gives_identical_batches():
  a = _take(_iterator(_data_config()), 4)
  b = _take(_iterator(_data_config()), 4)
  _assert_batches_equal(a, b)
  c = _take(_iterator(_data_config(seed=1)), 4)
  assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_iterator_state_resumes_with_the_next_batch():
  iterator = _iterator(_data_config())
  _take(iterator, 3)
  state = iterator.get_state()
  expected = _take(iterator, 3)
  resumed = _iterator(_data_config())
  resumed.set_state(state)
  _assert_batches_equal(_take(resumed, 3), expected)


def test_eval_batches_pad_the_last_batch_and_set_valid():
  config = _data_config()
  source = ToySource(num_examples=6, seed=1)
  batches = list(pipeline.eval_batches(config, batch_size=4))
  assert len(batches) == 2
  np.testing.assert_array_equal(batches[0]["valid"], [1, 1, 1, 1])
  np.testing.assert_array_equal(batches[1]["valid"], [1, 1, 0, 0])
  for batch in batches:
    assert batch["image"].shape == (4, SIZE, SIZE, 3)
    assert batch["label"].shape == (4, SIZE, SIZE)
    assert batch["valid"].dtype == np.int32
  # Ordered pass over the source with eval transforms only.
  indices = np.concatenate([b["index"][b["valid"] == 1] for b in batches])
  np.testing.assert_array_equal(indices, np.arange(6))
  for batch in batches:
    for image, label, index, valid in zip(
      batch["image"], batch["label"], batch["index"], batch["valid"], strict=True
    ):
      if not valid:
        continue
      example = source[int(index)]
      np.testing.assert_allclose(image[..., 1], (example["image"][..., 0] - MEAN) / STD, rtol=1e-6)
      np.testing.assert_array_equal(label, example["label"])
  # An exact multiple of the batch size needs no padding.
  batches = list(pipeline.eval_batches(config, batch_size=2))
  assert len(batches) == 3
  assert all(b["valid"].tolist() == [1, 1] for b in batches)


def test_empty_source_is_a_data_error():
  config = _data_config(train_source={"name": "test_toy", "num_examples": 0, "seed": 0})
  with pytest.raises(DataError, match="empty"):
    _iterator(config)
  config = _data_config(eval_source={"name": "test_toy", "num_examples": 0, "seed": 0})
  with pytest.raises(DataError, match="empty"):
    list(pipeline.eval_batches(config, batch_size=4))


def test_unknown_source_kwarg_names_the_dataset():
  config = _data_config(train_source={"name": "test_toy", "num_examples": 4, "colour": "red"})
  with pytest.raises(DataError) as info:
    _iterator(config)
  assert "'test_toy'" in str(info.value)
  assert "colour" in str(info.value)


def test_nan_pixel_is_a_data_error_when_iterating():
  source = {"name": "test_toy", "num_examples": 6, "seed": 0, "nan_index": 2}
  iterator = _iterator(_data_config(train_source=source))
  with pytest.raises(DataError, match="NaN") as info:
    _take(iterator, 3)  # 12 examples: example 2 is read in the first epoch
  assert "test_toy" in str(info.value)
  with pytest.raises(DataError, match="NaN"):
    list(pipeline.eval_batches(_data_config(eval_source=source), batch_size=4))


def test_unknown_dataset_name_lists_known_names():
  config = _data_config(train_source={"name": "no_such_dataset"})
  with pytest.raises(KeyError) as info:
    _iterator(config)
  message = str(info.value)
  assert "no_such_dataset" in message
  for known in ("phantom_bac", "image_folder", "test_toy"):
    assert known in message
