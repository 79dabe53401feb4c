"""Data streams (`config.data.streams`): own batch sizes, transforms, views and labels; zipped
sub-batches, seeding, resume, errors."""

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

  def __init__(
    self,
    num_examples: int = 10,
    start: int = 0,
    nan: bool = False,
    labelled: bool = True,
    label_offset: int = 0,
  ):
    self.num_examples, self.start, self.nan, self.labelled = num_examples, start, nan, labelled
    self.label_offset = label_offset

  def __len__(self):
    return self.num_examples

  def __getitem__(self, index):
    value = self.start + index
    image = np.full((SIZE, SIZE, 1), np.nan if self.nan else value / 100.0, np.float32)
    label = np.zeros((SIZE, SIZE), np.int32)
    label[: value % SIZE] = 1
    label += self.label_offset
    if not self.labelled:
      return {"image": image, "index": np.int32(value)}
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


TRAIN_TRANSFORMS = ("random_brightness", "normalize")


def stream(source: dict, batch_size: int = 4, transforms=TRAIN_TRANSFORMS, **fields) -> dict:
  return {
    "source": source,
    "batch_size": batch_size,
    "transforms": transforms,
    "views": fields.pop("views", {}),
    "require_label": fields.pop("require_label", True),
    **fields,
  }


META = {"meta": stream({"name": "test_indexed", "num_examples": 3, "start": 100})}


def _batches(config, n):
  iterator = pipeline.train_iterator(pipeline.train_dataset(config), config)
  return [next(iterator) for _ in range(n)]


def test_each_batch_carries_one_batch_of_every_stream():
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


def test_streams_have_their_own_batch_size_transforms_and_labels():
  """A labelled stream of 2 and an unlabelled one of 6 (1:3), each with its own transforms."""
  unlabelled = stream(
    {"name": "test_indexed", "num_examples": 7, "start": 300, "labelled": False},
    batch_size=6,
    transforms=("normalize",),
    require_label=False,
  )
  config = _data_config({"unlabelled": unlabelled}, batch_size=2)
  batch = _batches(config, 1)[0]
  assert batch["image"].shape == (2, SIZE, SIZE, 1)
  assert set(batch["unlabelled"]) == {"image", "index"}
  assert batch["unlabelled"]["image"].shape == (6, SIZE, SIZE, 1)
  # Only `normalize`: the stored value comes back exactly, no brightness factor.
  values = batch["unlabelled"]["index"] / 100.0
  np.testing.assert_allclose(
    batch["unlabelled"]["image"][:, 0, 0, 0] * 0.25 + 0.5, values, rtol=1e-6
  )


def test_an_unlabelled_stream_that_requires_labels_is_a_clear_error():
  unlabelled = stream({"name": "test_indexed", "num_examples": 3, "labelled": False})
  with pytest.raises(DataError, match="streams.unlabelled.*no 'label'"):
    pipeline.train_dataset(_data_config({"unlabelled": unlabelled}))[0]


def test_views_are_pixel_aligned_photometric_copies_with_their_own_draws():
  source = {"name": "test_indexed", "num_examples": 10, "start": 1}
  views = {"strong": ("random_brightness",), "weak": ()}
  config = _data_config({"u": stream(source, transforms=("normalize",), views=views)})
  u = _batches(config, 1)[0]["u"]
  assert set(u) == {"image", "image_strong", "image_weak", "label", "index"}
  np.testing.assert_array_equal(u["image_weak"], u["image"])
  ratio = u["image_strong"] / u["image"]
  assert np.all(np.abs(ratio - 1.0) <= 0.2 + 1e-5) and not np.allclose(ratio, 1.0)
  # Per example one factor over every pixel: the view is aligned with the image and label.
  np.testing.assert_allclose(ratio, ratio[:, :1, :1, :].repeat(SIZE, 1).repeat(SIZE, 2), 1e-5)


def test_a_view_that_moves_pixels_is_refused():
  config = _data_config(
    {"u": stream({"name": "test_indexed"}, views={"crop": ("random_crop",)})}, crop_size=4
  )
  with pytest.raises(DataError, match="photometric"):
    pipeline.train_dataset(config)[0]


def test_streams_get_their_transforms_with_their_own_seeds():
  source = {"name": "test_indexed", "num_examples": 10, "start": 1}  # No zero image.
  meta = {"meta": stream({**source, "start": 100})}
  batch = _batches(_data_config(meta, train_source=source), 1)[0]

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
  unlabelled = stream({"name": "test_indexed", "num_examples": 7, "start": 300}, batch_size=12)
  config = _data_config({**META, "unlabelled": unlabelled})
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
    for name in ("meta", "unlabelled"):
      np.testing.assert_array_equal(a[name]["index"], b[name]["index"])
      np.testing.assert_array_equal(a[name]["image"], b[name]["image"])


def test_two_streams_are_zipped_under_their_names():
  streams = {**META, "extra": stream({"name": "test_indexed", "num_examples": 5, "start": 200})}
  batch = _batches(_data_config(streams), 1)[0]
  assert np.all(batch["meta"]["index"] >= 100) and np.all(batch["meta"]["index"] < 200)
  assert np.all(batch["extra"]["index"] >= 200)


def test_stream_named_like_an_example_key_is_a_clear_error():
  config = _data_config({"label": stream({"name": "test_indexed", "num_examples": 3})})
  with pytest.raises(DataError, match="collides"):
    pipeline.train_dataset(config)[0]


def test_stream_examples_are_validated():
  bad = stream({"name": "test_indexed", "num_examples": 3, "nan": True})
  with pytest.raises(DataError, match="NaN"):
    pipeline.train_dataset(_data_config({"meta": bad}))[0]


def test_a_stream_section_with_missing_fields_is_a_clear_error():
  config = _data_config({"meta": {"name": "test_indexed", "num_examples": 3}})
  with pytest.raises(ValueError, match="streams.meta must have exactly the fields"):
    pipeline.train_dataset(config)


def test_an_empty_stream_is_a_clear_error():
  config = _data_config({"meta": stream({"name": "test_indexed", "num_examples": 0})})
  with pytest.raises(DataError, match="empty"):
    pipeline.train_dataset(config)


def test_labels_in_an_unlabelled_stream_are_dropped_not_validated():
  """The labels of an unlabelled stream are ignored: here (values 5, 6) they would fail
  num_classes=2, and a labelled stream with the same source does fail."""
  source = {"name": "test_indexed", "num_examples": 12, "start": 300, "label_offset": 5}
  config = _data_config({"unlabelled": stream(source, require_label=False)})
  batch = pipeline.train_dataset(config)[0]
  assert "label" in batch and "label" not in batch["unlabelled"]
  config = _data_config({"labelled": stream(source, require_label=True)})
  with pytest.raises(DataError, match="streams.labelled.*label values"):
    pipeline.train_dataset(config)[0]
