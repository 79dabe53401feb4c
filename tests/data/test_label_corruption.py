"""Tests of data/sources/corruption.py: label noise for segmentation and the clean meta split."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from mlsup_jax.data.sources import build_source
from mlsup_jax.data.sources import corruption as C

SIZE = 24


class NestedShapes:
  """`n` examples: a class-1 disc ("organ") holding a class-2 disc ("lesion"), random centres."""

  def __init__(self, n: int = 20):
    self.n = n
    self.case_ids = [f"case{i}" for i in range(n)]

  def __len__(self):
    return self.n

  def __getitem__(self, index):
    rng = np.random.default_rng([7, index])
    rows, cols = np.mgrid[:SIZE, :SIZE]
    cy, cx = rng.uniform(9, 15, size=2)
    distance = np.hypot(rows - cy, cols - cx)
    label = np.zeros((SIZE, SIZE), np.int32)
    label[distance < rng.uniform(6, 8)] = 1
    label[distance < rng.uniform(2.5, 4)] = 2
    image = rng.normal(size=(SIZE, SIZE, 1)).astype(np.float32) + label[..., None]
    return {"image": image, "label": label, "index": np.int32(index)}


def _source(role="train", **kwargs):
  kwargs = {"noise_ratio": 0.5, "num_meta": 5, "seed": 0, **kwargs}
  return C.NoisyLabelSource(NestedShapes(), role=role, **kwargs)


def _round_half_up(x: float) -> int:
  return math.floor(x + 0.5)


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.3, 0.5, 0.7, 1.0])
def test_fraction_of_corrupted_training_examples_is_exact(ratio):
  source = _source(noise_ratio=ratio)
  assert len(source) == 15
  expected = _round_half_up(ratio * 15)
  assert int(source.corrupted.sum()) == expected
  base = NestedShapes()
  changed = 0
  for i in range(len(source)):
    example = source[i]
    clean = base[int(source.indices[i])]["label"]
    assert int(example["label_corrupted"]) == int(source.corrupted[i])
    if not source.corrupted[i]:
      np.testing.assert_array_equal(example["label"], clean)
    changed += int(not np.array_equal(example["label"], clean))
  # Every toy mask has a boundary, so every corrupted example really changes.
  assert changed == expected


def test_meta_split_is_clean_disjoint_and_completes_the_training_set():
  train, meta = _source("train", noise_ratio=1.0), _source("meta", noise_ratio=1.0)
  assert len(meta) == 5 and len(train) == 15
  assert not set(train.indices.tolist()) & set(meta.indices.tolist())
  assert sorted(train.indices.tolist() + meta.indices.tolist()) == list(range(20))
  assert not meta.corrupted.any()
  base = NestedShapes()
  for i in range(len(meta)):
    example, original = meta[i], base[int(meta.indices[i])]
    for key in original:
      np.testing.assert_array_equal(example[key], original[key])
    assert int(example["label_corrupted"]) == 0
  assert meta.case_ids == [f"case{i}" for i in meta.indices]


def test_image_and_other_keys_are_never_touched():
  source, base = _source(noise_ratio=1.0), NestedShapes()
  for i in range(len(source)):
    example, original = source[i], base[int(source.indices[i])]
    np.testing.assert_array_equal(example["image"], original["image"])
    assert int(example["index"]) == int(original["index"])


def test_dilation_grows_and_erosion_shrinks_every_class_in_painters_order():
  label = NestedShapes()[3]["label"]
  cross = C.structuring_element("cross", 2)
  grown = C.dilate_labels(label, 2, cross)
  shrunk = C.erode_labels(label, 1, cross)
  assert (grown > 0).sum() > (label > 0).sum() > (shrunk > 0).sum()
  # Dilation: the lesion (2) grows into the organ, the organ (1) into the background.
  assert np.all(grown[label == 2] == 2) and (grown == 2).sum() > (label == 2).sum()
  np.testing.assert_array_equal(grown == 2, ndimage.binary_dilation(label == 2, cross, 2))
  np.testing.assert_array_equal(grown > 0, ndimage.binary_dilation(label > 0, cross, 2))
  # Erosion: every painted region `label >= c` shrinks to its erosion; the lesion's rim becomes
  # organ (what lies underneath), the organ's outer rim background, and the organ does not
  # shrink around its own lesion.
  for c in (1, 2):
    expected = ndimage.binary_erosion(label >= c, cross, 1, border_value=1)
    np.testing.assert_array_equal(shrunk >= c, expected)
  assert np.all(shrunk[(label == 2) & (shrunk != 2)] == 1)
  assert np.all(shrunk[(label == 1) & (shrunk != 1)] == 0)
  assert set(np.unique(shrunk).tolist()) == {0, 1, 2}


def test_erosion_of_touching_siblings_hands_the_rim_to_the_lower_class():
  label = np.zeros((SIZE, SIZE), np.int32)
  label[6:18, 4:12] = 1
  label[6:18, 12:20] = 2  # Touches class 1 along column 12.
  shrunk = C.erode_labels(label, 1, C.structuring_element("cross", 2))
  assert np.all(shrunk[7:17, 12] == 1)  # Class 2's rim on the shared border becomes class 1.
  assert np.all(shrunk[6, 13:19] == 0) and np.all(shrunk[6, 5:11] == 0)
  assert (shrunk == 2).sum() < (label == 2).sum() and (shrunk >= 1).sum() < (label >= 1).sum()


def test_binary_dilation_and_erosion_match_scipy():
  label = (NestedShapes()[5]["label"] > 0).astype(np.int32)
  box = C.structuring_element("box", 2)
  np.testing.assert_array_equal(
    C.dilate_labels(label, 3, box), ndimage.binary_dilation(label, box, 3).astype(np.int32)
  )
  np.testing.assert_array_equal(
    C.erode_labels(label, 1, box),
    ndimage.binary_erosion(label, box, 1, border_value=1).astype(np.int32),
  )


def test_classes_option_limits_the_corruption_to_chosen_classes():
  label = NestedShapes()[2]["label"]
  grown = C.dilate_labels(label, 2, C.structuring_element("cross", 2), classes=(2,))
  assert (grown == 2).sum() > (label == 2).sum()
  np.testing.assert_array_equal(grown == 0, label == 0)  # The organ did not grow.


def test_elastic_deformation_keeps_the_label_set_and_changes_the_mask():
  label = NestedShapes()[4]["label"]
  out = C.elastic_labels(
    label,
    np.random.default_rng(0),
    alpha=2.0,
    sigma=3.0,
    max_rotation=15.0,
    max_translation=2.0,
  )
  assert out.shape == label.shape and out.dtype == label.dtype
  assert set(np.unique(out).tolist()) == set(np.unique(label).tolist())
  assert (out != label).mean() > 0.01


def test_translation_alone_moves_the_mask_rigidly():
  label = np.zeros((SIZE, SIZE), np.int32)
  label[10:14, 10:14] = 1
  out = C.elastic_labels(
    label, np.random.default_rng(3), alpha=0.0, sigma=1.0, max_rotation=0.0, max_translation=3.0
  )
  rows, cols = np.nonzero(out)
  # Nearest-neighbour sampling of a shift keeps a 4 × 4 block, moved by at most 3 px per axis.
  assert rows.size == 16 and np.ptp(rows) == 3 and np.ptp(cols) == 3
  shift = np.array([rows.min() - 10, cols.min() - 10])
  assert np.all(np.abs(shift) <= 3) and np.any(shift != 0)


def test_elastic_corruption_on_3d_labels():
  label = np.zeros((8, SIZE, SIZE), np.int32)
  label[2:6, 6:18, 6:18] = 1
  label[3:5, 10:14, 10:14] = 2
  corrupt = C.LabelCorruption(corruptions=("elastic", "dilation"), iterations=(1, 1))
  out = corrupt(label, np.random.default_rng(1))
  assert out.shape == label.shape and set(np.unique(out).tolist()) == {0, 1, 2}


def test_corruption_is_deterministic_per_example_and_seed():
  a = _source(noise_ratio=0.6, corruptions=("elastic", "dilation"))
  b = _source(noise_ratio=0.6, corruptions=("elastic", "dilation"))
  forward = [a[i]["label"] for i in range(len(a))]
  backward = [b[i]["label"] for i in reversed(range(len(b)))][::-1]
  for x, y in zip(forward, backward, strict=True):
    np.testing.assert_array_equal(x, y)
  other = _source(noise_ratio=0.6, corruptions=("elastic", "dilation"), seed=1)
  assert not np.array_equal(a.indices, other.indices) or not np.array_equal(
    a.corrupted, other.corrupted
  )
  # An example's noise depends on the seed and its base index, not on the split around it.
  c = _source(noise_ratio=1.0, corruptions=("elastic",), num_meta=3)
  d = _source(noise_ratio=1.0, corruptions=("elastic",), num_meta=4)
  shared = sorted(set(c.indices.tolist()) & set(d.indices.tolist()))
  assert shared
  for base_index in shared[:3]:
    i = int(np.flatnonzero(c.indices == base_index)[0])
    j = int(np.flatnonzero(d.indices == base_index)[0])
    np.testing.assert_array_equal(c[i]["label"], d[j]["label"])


def test_zero_ratio_is_the_identity():
  source, base = _source(noise_ratio=0.0), NestedShapes()
  assert not source.corrupted.any()
  for i in range(len(source)):
    np.testing.assert_array_equal(source[i]["label"], base[int(source.indices[i])]["label"])


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan"), True])
def test_ratio_outside_unit_interval_is_a_clear_error(ratio):
  with pytest.raises(ValueError, match=r"noise_ratio.*\[0, 1\]"):
    _source(noise_ratio=ratio)


@pytest.mark.parametrize(
  "kwargs, message",
  [
    ({"role": "test"}, "Unknown role"),
    ({"num_meta": 20}, "num_meta"),
    ({"num_meta": -1}, "num_meta"),
    ({"corruptions": ("blur",)}, "Unknown corruptions"),
    ({"corruptions": ()}, "non-empty"),
    ({"iterations": (0, 2)}, "iterations"),
    ({"structure": "disk"}, "Unknown structure"),
    ({"classes": (0,)}, "foreground"),
  ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _source(**kwargs)


def test_empty_meta_role_is_an_error():
  with pytest.raises(ValueError, match="num_meta > 0"):
    _source("meta", num_meta=0)


def test_clean_label_is_kept_on_request():
  source = _source(noise_ratio=1.0, keep_clean_label=True)
  example, original = source[0], NestedShapes()[int(source.indices[0])]
  np.testing.assert_array_equal(example["clean_label"], original["label"])
  assert not np.array_equal(example["label"], example["clean_label"])


def test_wraps_a_phantom_by_its_dataset_config():
  config = {
    "name": "noisy_labels",
    "base": {"name": "phantom_abdomen", "split": "train", "num_cases": 6, "image_size": 32},
    "noise_ratio": 0.5,
    "num_meta": 2,
    "corruptions": ("dilation",),
  }
  import ml_collections

  source = build_source(ml_collections.ConfigDict(config))
  assert len(source) == 4 and int(source.corrupted.sum()) == 2
  assert source.class_names[1] == "liver"
  for i in np.flatnonzero(source.corrupted):
    example = source[int(i)]
    clean = source.base[int(source.indices[i])]["label"]
    assert (example["label"] > 0).sum() > (clean > 0).sum()
    assert set(np.unique(example["label"]).tolist()) == set(np.unique(clean).tolist())
    assert example["label"].dtype == clean.dtype
