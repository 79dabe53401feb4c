"""Tests of mlsup_jax.data.augmentation.transforms (grain maps) and mlsup_jax.data.validation."""

from __future__ import annotations

import grain
import numpy as np
import pytest

from configs import maxquery as maxquery_config
from configs import scunet as scunet_config
from configs import semi_supervised as semi_supervised_config
from configs import tend as tend_config
from mlsup_jax.data.augmentation.transforms import (
  TRANSFORMS,
  Normalize,
  RandomBrightness,
  RandomCrop,
  RandomDihedral,
  ReplicateChannels,
)
from mlsup_jax.data.validation import DataError, check_example

# ----------------------------------------------------------------------------------------------
# Transforms.


def _example(h=8, w=8, c=1, seed=0):
  rng = np.random.default_rng(seed)
  image = rng.uniform(size=(h, w, c)).astype(np.float32)
  label = (image[..., 0] > 0.5).astype(np.int32)
  return {"image": image, "label": label}


def _dihedral_candidates(x):
  return [
    np.rot90(x, 1, axes=(0, 1)),
    x[:, ::-1],
    x[::-1, :],
    np.rot90(x, 3, axes=(0, 1)),
    x,
  ]


@pytest.mark.parametrize("h, w", [(8, 8), (6, 10)])
def test_random_dihedral_moves_image_and_label_together(h, w):
  example = _example(h, w, c=2, seed=1)
  example["mask"] = np.arange(h * w, dtype=np.float32).reshape(h, w)
  example["spacing"] = np.array([0.5, 0.7], np.float32)  # not spatial: must stay as is
  transform = RandomDihedral()
  seen = set()
  for seed in range(40):
    out = transform.random_map(dict(example), np.random.default_rng(seed))
    # The label is still the thresholded image, i.e. the two moved identically.
    np.testing.assert_array_equal(out["label"], (out["image"][..., 0] > 0.5).astype(np.int32))
    candidates = _dihedral_candidates(example["image"])
    matches = [
      i
      for i, c in enumerate(candidates)
      if c.shape == out["image"].shape and np.array_equal(c, out["image"])
    ]
    assert len(matches) == 1
    op = matches[0]
    seen.add(op)
    np.testing.assert_array_equal(out["label"], _dihedral_candidates(example["label"])[op])
    np.testing.assert_array_equal(out["mask"], _dihedral_candidates(example["mask"])[op])
    np.testing.assert_array_equal(out["spacing"], example["spacing"])
    assert out["image"].flags["C_CONTIGUOUS"]
  assert seen == {0, 1, 2, 3, 4}
  # The input example is not modified in place.
  np.testing.assert_array_equal(example["label"], (example["image"][..., 0] > 0.5))


def test_random_dihedral_is_reproducible_per_seed():
  example = _example(seed=2)
  transform = RandomDihedral()
  a = transform.random_map(example, np.random.default_rng(7))
  b = transform.random_map(example, np.random.default_rng(7))
  np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(a["label"], b["label"])


def test_normalize():
  example = _example(seed=3)
  out = Normalize(mean=0.25, std=0.5).map(example)
  assert out["image"].dtype == np.float32
  np.testing.assert_allclose(out["image"], (example["image"] - 0.25) / 0.5, rtol=1e-6)
  np.testing.assert_array_equal(out["label"], example["label"])
  # Integer images are converted to float first.
  out = Normalize(mean=1.0, std=2.0).map({"image": np.array([[[3]]], np.uint8)})
  np.testing.assert_array_equal(out["image"], np.array([[[1.0]]], np.float32))


def test_replicate_channels():
  example = _example(seed=4)
  out = ReplicateChannels(copies=3).map(example)
  assert out["image"].shape == (8, 8, 3)
  for k in range(3):
    np.testing.assert_array_equal(out["image"][..., k], example["image"][..., 0])
  np.testing.assert_array_equal(out["label"], example["label"])
  # Multi-channel images are left as they are.
  rgb = _example(c=2, seed=5)
  assert ReplicateChannels(copies=3).map(rgb)["image"].shape == (8, 8, 2)


def test_random_brightness_factor_in_range():
  example = _example(seed=6)
  example["image"] += 0.1  # strictly positive, so the ratio is defined
  delta = 0.2
  factors = []
  for seed in range(50):
    out = RandomBrightness(delta=delta).random_map(example, np.random.default_rng(seed))
    ratio = out["image"] / example["image"]
    # One factor for the whole image.
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
    factors.append(float(ratio.flat[0]))
    np.testing.assert_array_equal(out["label"], example["label"])
  factors = np.asarray(factors)
  assert np.all(factors >= 1 - delta - 1e-6) and np.all(factors <= 1 + delta + 1e-6)
  # The range is actually used, on both sides of 1.
  assert factors.min() < 0.95 and factors.max() > 1.05


def test_random_crop_alignment_and_size():
  h, w = 10, 12
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  example = {
    "image": np.stack([rows, cols], axis=-1).astype(np.float32),
    "label": (rows * 100 + cols).astype(np.int32),
  }
  starts = set()
  for seed in range(30):
    out = RandomCrop(size=4).random_map(example, np.random.default_rng(seed))
    assert out["image"].shape == (4, 4, 2)
    assert out["label"].shape == (4, 4)
    y0, x0 = int(out["image"][0, 0, 0]), int(out["image"][0, 0, 1])
    assert 0 <= y0 <= h - 4 and 0 <= x0 <= w - 4
    np.testing.assert_array_equal(out["image"], example["image"][y0 : y0 + 4, x0 : x0 + 4])
    np.testing.assert_array_equal(out["label"], example["label"][y0 : y0 + 4, x0 : x0 + 4])
    starts.add((y0, x0))
  assert len(starts) > 5
  # A crop of the full size returns the whole example.
  out = RandomCrop(size=10).random_map(
    {k: v[:, :10] for k, v in example.items()}, np.random.default_rng(0)
  )
  np.testing.assert_array_equal(out["label"], example["label"][:, :10])
  with pytest.raises(ValueError, match="exceeds"):
    RandomCrop(size=11).random_map(example, np.random.default_rng(0))


def test_transform_table_builds_from_config():
  # Each transform reads its own fields; together the three configs hold every one of them.
  data = scunet_config.get_config("smoke").data
  ct = maxquery_config.get_config("smoke").data
  anomaly = tend_config.get_config("smoke").data
  semi = semi_supervised_config.get_config("smoke").data
  source = {
    "random_noise": semi,
    "ct_window": ct,
    "tend_distortion": anomaly,
    "unseen_transform": anomaly,
    "unseen_transform_image": anomaly,
  }
  built = {name: TRANSFORMS.get(name)(source.get(name, data)) for name in TRANSFORMS.names()}
  assert built["tend_distortion"].preset == anomaly.distortion_preset
  assert built["unseen_transform"].name == anomaly.unseen_transform
  assert built["unseen_transform"].output_key == "distorted"
  assert built["unseen_transform_image"].output_key == "image"  # replaces the evaluated image
  assert (built["ct_window"].level, built["ct_window"].width) == (ct.window_level, ct.window_width)
  assert isinstance(built["normalize"], Normalize)
  assert (built["normalize"].mean, built["normalize"].std) == (data.norm_mean, data.norm_std)
  assert built["replicate_channels"].copies == data.in_channels
  assert built["random_brightness"].delta == data.brightness_delta
  assert built["random_crop"].size == data.crop_size
  assert built["random_noise"].std == semi.noise_std
  for name in ("random_dihedral", "random_brightness", "random_crop"):
    assert isinstance(built[name], grain.transforms.RandomMap)
  with pytest.raises(KeyError, match="random_dihedral"):
    TRANSFORMS.get("random_rotate")


# ----------------------------------------------------------------------------------------------
# Validation.


def _check(example, *, spatial_dims=2, num_classes=2, require_label=True):
  return check_example(
    example,
    where="toy[3]",
    spatial_dims=spatial_dims,
    num_classes=num_classes,
    require_label=require_label,
  )


def test_valid_example_passes_unchanged():
  example = _example()
  assert _check(example) is example
  # Float labels holding integers are fine; so is a missing label when not required.
  _check({"image": example["image"], "label": example["label"].astype(np.float32)})
  _check({"image": example["image"]}, require_label=False)
  # 3-D volumes.
  volume = {"image": np.zeros((4, 5, 6, 1), np.float32), "label": np.ones((4, 5, 6), np.uint8)}
  _check(volume, spatial_dims=3)
  # num_classes=None skips the range check.
  _check({"image": example["image"], "label": example["label"] + 7}, num_classes=None)


def _expect_error(example, *patterns, **kwargs):
  with pytest.raises(DataError) as info:
    _check(example, **kwargs)
  message = str(info.value)
  assert "toy[3]" in message  # names the example
  for pattern in patterns:
    assert pattern in message, message
  assert isinstance(info.value, ValueError)
  return message


def test_missing_image():
  _expect_error({"label": np.zeros((4, 4), np.int32)}, "no 'image'", "label")


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 8, 1)])
def test_wrong_rank(shape):
  _expect_error({"image": np.zeros(shape, np.float32)}, "rank", str(shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_pixels(bad):
  example = _example()
  example["image"][1, 2, 0] = bad
  example["image"][3, 3, 0] = bad
  _expect_error(example, "NaN", "2 ")


def test_non_numeric_image():
  _expect_error({"image": np.full((2, 2, 1), "a")}, "not numeric")


def test_label_shape_mismatch():
  example = _example()
  example["label"] = example["label"][:, :7]
  _expect_error(example, "label shape (8, 7)", "(8, 8)")


@pytest.mark.parametrize("value, span", [(2, "[0, 2]"), (-1, "[-1, 1]")])
def test_labels_out_of_range(value, span):
  example = _example()
  example["label"][0, 0] = value
  message = _expect_error(example, span, "[0, 1]", "num_classes=2")
  assert "must lie in" in message


@pytest.mark.parametrize("bad", [0.5, np.nan])
def test_non_integer_float_labels(bad):
  example = _example()
  example["label"] = example["label"].astype(np.float32)
  example["label"][2, 2] = bad
  _expect_error(example, "non-integer", "float32")


@pytest.mark.parametrize("label", [np.full((8, 8), "a"), np.full((8, 8), None, object)])
def test_non_numeric_labels(label):
  _expect_error({"image": _example()["image"], "label": label}, "label dtype", "not numeric")


def test_boolean_labels_are_accepted():
  example = _example()
  _check({"image": example["image"], "label": example["label"].astype(bool)})


def test_missing_label_when_required():
  _expect_error({"image": _example()["image"]}, "no 'label'")


def test_random_gaussian_noise_draws_its_sigma_per_example_up_to_std():
  from mlsup_jax.data.augmentation.transforms import RandomGaussianNoise

  noise = RandomGaussianNoise(std=0.2)
  example = {"image": np.zeros((64, 64, 1), np.float32), "label": np.ones((64, 64), np.int32)}
  sigmas = []
  for seed in range(20):
    out = noise.random_map(example, np.random.default_rng(seed))
    assert out["image"].shape == (64, 64, 1) and out["image"].dtype == np.float32
    assert out["label"] is example["label"]  # Photometric only.
    sigmas.append(float(out["image"].std()))
    again = noise.random_map(example, np.random.default_rng(seed))
    np.testing.assert_array_equal(out["image"], again["image"])
  assert 0.0 <= min(sigmas) and max(sigmas) <= 0.2 * 1.05
  assert max(sigmas) - min(sigmas) > 0.05  # σ varies between examples.
