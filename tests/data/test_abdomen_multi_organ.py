"""The abdominal phantom's multi-organ mode (LTUDA); the single-organ cases are unchanged."""

import hashlib
import pathlib

import numpy as np
import pytest

from mlsup_jax.data.phantoms.abdomen import MULTI_ORGAN_CLASS_NAMES, AbdomenPhantomSource

# sha256[:16] of the label bytes of the single-organ phantom before the multi-organ mode was
# added: the MaxQuery and noisy-label studies' data must reproduce. Labels are integers, equal
# on every machine; the images (float32 HU from transcendental functions, whose last bits differ
# between CPUs, e.g. numpy's AVX-512 paths) are compared with the stored arrays to 0.01 HU.
REFERENCE = {
  ("train", 0, 2): "d80b8ea19af2c38d",
  ("train", 1, 2): "ff438b31b6b7a664",
  ("train", 2, 2): "3719e9fa018839e6",
  ("test", 0, 3): "d71c1bec30d6f832",
}
IMAGES = pathlib.Path(__file__).with_name("abdomen_single_organ_images.npz")


def _digest(array) -> str:
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("key", sorted(REFERENCE))
def test_single_organ_cases_are_unchanged(key):
  split, index, dims = key
  if dims == 2:
    source = AbdomenPhantomSource(split, 6, 64)
  else:
    source = AbdomenPhantomSource(split, 3, 32, spatial_dims=3, depth=8)
  case = source[index]
  assert _digest(case["label"]) == REFERENCE[key]
  with np.load(IMAGES) as images:
    expected = images[f"{split}_{index}_{dims}d"]
  np.testing.assert_allclose(case["image"], expected, rtol=0, atol=0.01)


def test_multi_organ_labels_sizes_and_contrast():
  source = AbdomenPhantomSource("train", 16, 64, organs="multi")
  assert source.class_names == MULTI_ORGAN_CLASS_NAMES
  sizes, present, hu = np.zeros(5), np.zeros(5), {o: [] for o in range(1, 5)}
  for i in range(16):
    case = source[i]
    label, image = case["label"], case["image"][..., 0]
    assert label.min() >= 0 and label.max() <= 4
    counts = np.bincount(label.ravel(), minlength=5)
    sizes += counts
    present += counts > 0
    for organ in range(1, 5):
      if counts[organ]:
        hu[organ].append(image[label == organ].mean())
    # Tumours are part of the liver label in this mode.
    assert np.all(label[case["lesion"] > 0] == 1) or not case["lesion"].any()
  assert present[1] == 16  # the liver in every slice
  assert all(present[o] >= 4 for o in (2, 3, 4)), present  # the others in many slices
  assert sizes[1] > sizes[2] > sizes[4] and sizes[3] > sizes[4]  # the pancreas is the smallest
  assert np.mean(hu[4]) < np.mean(hu[1]) - 30  # and low-contrast against the liver


def test_multi_organ_mode_keeps_the_case_draws():
  """The liver and the image away from the added organs are the single-organ case's, re-posed:
  so the same case gives the same tumour subtype in both modes."""
  single = AbdomenPhantomSource("test", 4, 32)
  multi = AbdomenPhantomSource("test", 4, 32, organs="multi")
  for i in range(4):
    assert int(single[i]["subtype"]) == int(multi[i]["subtype"])
  again = AbdomenPhantomSource("test", 4, 32, organs="multi")
  np.testing.assert_array_equal(multi[2]["label"], again[2]["label"])


def test_multi_organ_volumes_and_bad_mode():
  volume = AbdomenPhantomSource("val", 2, 32, spatial_dims=3, depth=16, organs="multi")[0]
  assert volume["label"].shape == (16, 32, 32)
  assert set(np.unique(volume["label"]).tolist()) >= {0, 1, 3}
  with pytest.raises(ValueError, match="organs must be one of"):
    AbdomenPhantomSource(organs="all")
