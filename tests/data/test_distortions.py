"""Tests of mlsup_jax.data.augmentation.distortions: TEND presets, unseen transforms, grain maps."""

from __future__ import annotations

import grain
import ml_collections
import numpy as np
import pytest
from distortion_images import radiograph

from mlsup_jax.data.augmentation import distortions as D
from mlsup_jax.data.augmentation import image_warps as W
from mlsup_jax.data.augmentation import warp_sampling as S
from mlsup_jax.data.augmentation.transforms import TRANSFORMS

ALL_OPTIONS = [(p, k) for p, options in D.TEND_PRESETS.items() for k in range(len(options))]

# ----------------------------------------------------------------------------------------------
# Presets.


def test_presets_reproduce_the_reference_sets():
  assert len(D.TEND_PRESETS["rsna"]) == 8 and len(D.TEND_PRESETS["ivc"]) == 9
  for options in D.TEND_PRESETS.values():
    assert {o.method for o in options} <= set(W.DISTORTIONS)
    assert {o.virtual_pixel for o in options} <= set(S.VIRTUAL_PIXELS)
  assert D.TEND_PRESETS["ivc"][-1].params == (0.7, 0.1, 0.0, 0.6, 5, 5)
  assert sum(o.viewport is not None for o in D.TEND_PRESETS["ivc"]) == 1
  assert len(D.distortion_names("ivc")) == 9


@pytest.mark.parametrize("n", [64, 256])
@pytest.mark.parametrize("preset, k", ALL_OPTIONS)
def test_preset_options_keep_shape_dtype_and_range(preset, k, n):
  option = D.TEND_PRESETS[preset][k]
  image = radiograph(n, channels=1 if n == 64 else None)
  out = D.apply_option(image, option)
  assert out.shape == image.shape and out.dtype == image.dtype
  assert np.isfinite(out).all()
  assert out.min() >= image.min() and out.max() <= image.max()


def test_preset_options_work_on_non_square_multichannel_and_uint8_images():
  grey = radiograph(64)[:48]
  rgb = np.repeat(grey[..., None], 3, axis=-1)
  as_uint8 = np.round(grey * 255).astype(np.uint8)
  for options in D.TEND_PRESETS.values():
    for option in options:
      out = D.apply_option(rgb, option)
      assert out.shape == (48, 64, 3)
      np.testing.assert_allclose(out[..., 1], out[..., 0])  # one map for every channel
      np.testing.assert_allclose(out[..., 0], D.apply_option(grey, option), atol=1e-6)
      out8 = D.apply_option(as_uint8, option)
      assert out8.dtype == np.uint8 and out8.shape == (48, 64)


@pytest.mark.parametrize("n", [64, 256])
def test_every_preset_option_changes_a_radiograph_strongly(n):
  # Measured on this phantom (grey range 0.9), identical at 64² and 256²: mean |distorted −
  # original| 0.14 (IVC barrel 0.2,0,0,1, the mildest) to 0.39, Pearson correlation with the
  # original 0.70 (that barrel) down to −0.24. A 2-pixel shift, for scale, gives 0.07 and 0.93:
  # MAD alone hardly separates it, the correlation does. Thresholds: MAD > 0.1, corr < 0.8.
  image = radiograph(n)
  nudged = np.roll(image, 2 * n // 64, axis=1)
  assert np.corrcoef(nudged.ravel(), image.ravel())[0, 1] > 0.9
  for preset, options in D.TEND_PRESETS.items():
    for k, option in enumerate(options):
      out = D.apply_option(image, option)
      mad = np.abs(out - image).mean()
      corr = np.corrcoef(out.ravel(), image.ravel())[0, 1]
      assert mad > 0.1 and corr < 0.8, (preset, k, option.method, mad, corr)


def test_preset_pixel_parameters_scale_with_the_image_size():
  # RSNA's one-pair perspective is a tiled translation by (−56, −25) px at 256²: at 64² it is
  # (−14, −6.25) px, so an image that varies along x only moves by exactly 14 columns.
  row = np.sin(np.linspace(0, 6 * np.pi, 64, endpoint=False)).astype(np.float32)
  image = np.tile(row, (64, 1))
  option = D.TEND_PRESETS["rsna"][4]
  assert option.method == "perspective" and option.virtual_pixel == "tile"
  np.testing.assert_allclose(D.apply_option(image, option), np.roll(image, -14, axis=1), atol=1e-5)
  # The same option at 256² and 64² gives the same picture (compared at 64²).
  big = radiograph(256)
  small = big.reshape(64, 4, 64, 4).mean(axis=(1, 3))
  for option in D.TEND_PRESETS["rsna"]:
    down = D.apply_option(big, option).reshape(64, 4, 64, 4).mean(axis=(1, 3))
    assert np.abs(down - D.apply_option(small, option)).mean() < 0.03, option.method


def test_background_is_white_and_transparent_black():
  image = radiograph(64)
  barrel = D.apply_option(image, D.TEND_PRESETS["rsna"][0])  # transparent
  affine = D.apply_option(image, D.TEND_PRESETS["rsna"][6])  # background
  assert barrel[0, 0] == pytest.approx(image.min()) and affine[0, 0] == pytest.approx(image.max())
  custom = D.apply_option(image, D.TEND_PRESETS["rsna"][6], value_range=(-1.0, 2.0))
  assert custom[0, 0] == pytest.approx(2.0)


def test_random_distortion_is_deterministic_and_covers_every_option():
  image = radiograph(64)
  for preset, options in D.TEND_PRESETS.items():
    a = D.random_distortion(image, np.random.default_rng(7), preset)
    b = D.random_distortion(image, np.random.default_rng(7), preset)
    np.testing.assert_array_equal(a, b)
    expected = {D.apply_option(image, o).tobytes() for o in options}
    seen = {
      D.random_distortion(image, np.random.default_rng(s), preset).tobytes() for s in range(80)
    }
    assert seen == expected


def test_errors_are_clear():
  image = radiograph(32)
  with pytest.raises(KeyError, match="Known presets: rsna, ivc"):
    D.random_distortion(image, np.random.default_rng(0), "isic")
  for bad in (np.zeros(16), np.zeros((1, 16)), np.zeros((4, 4, 1, 1))):
    with pytest.raises(ValueError, match=r"\[H, W\] or \[H, W, C\]"):
      D.random_distortion(bad, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\[H, W\] or \[H, W, C\]"):
      D.unseen_transform(bad, np.random.default_rng(0), "gaussian_blur")
  with pytest.raises(KeyError, match="random_cut"):
    D.unseen_transform(image, np.random.default_rng(0), "jpeg")
  with pytest.raises(ValueError, match="singular"):
    W.affine_projection(image, 1, 1, 1, 1, 0, 0)
  with pytest.raises(ValueError, match="viewport"):
    W.perspective(image, [(0, 0, 1, 1)], viewport=(0, 0, 0, 5))
  with pytest.raises(KeyError, match="Unknown distortion"):
    D.apply_option(image, D.DistortionOption("swirl", (1.0,), "edge"))


# ----------------------------------------------------------------------------------------------
# Unseen (validation-only) transforms.


@pytest.mark.parametrize("name", D.UNSEEN_TRANSFORMS)
def test_unseen_transforms(name):
  image = radiograph(64, channels=1)
  rng = np.random.default_rng(3)
  out = D.unseen_transform(image, rng, name)
  again = D.unseen_transform(image, np.random.default_rng(3), name)
  np.testing.assert_array_equal(out, again)
  assert out.shape == image.shape and out.dtype == image.dtype
  assert out.min() >= image.min() and out.max() <= image.max()
  diff = np.abs(out - image)[..., 0]
  assert diff.mean() > 0.005
  if name == "random_cut":  # one black rectangle, the rest untouched
    rows, cols = np.nonzero(diff > 0)
    box = np.s_[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert np.all(out[..., 0][box] == image.min())
    outside = np.ones(diff.shape, bool)
    outside[box] = False
    np.testing.assert_array_equal(out[..., 0][outside], image[..., 0][outside])
    assert out[..., 0][box].size >= 0.8 * (0.25 * 64) ** 2
  elif name == "gaussian_blur":  # smoother: less total variation
    assert np.abs(np.diff(out[..., 0], axis=1)).sum() < np.abs(np.diff(image[..., 0], axis=1)).sum()
  elif name == "random_crop_resize":  # zoomed in: also smoother per pixel
    assert (
      np.abs(np.diff(out[..., 0], axis=0)).mean() < np.abs(np.diff(image[..., 0], axis=0)).mean()
    )
  else:  # noise: rougher
    assert (
      np.abs(np.diff(out[..., 0], axis=1)).mean() > np.abs(np.diff(image[..., 0], axis=1)).mean()
    )
  names = {
    D.unseen_transform(image, np.random.default_rng(s)).tobytes() for s in range(40)
  }  # None draws the transform too
  assert len(names) == 40


# ----------------------------------------------------------------------------------------------
# Grain transforms.


def test_grain_transforms_from_the_registry():
  config = ml_collections.ConfigDict({"distortion_preset": "ivc", "unseen_transform": "random_cut"})
  tend = TRANSFORMS.get("tend_distortion")(config)
  unseen = TRANSFORMS.get("unseen_transform")(config)
  assert isinstance(tend, D.TendDistortion) and tend.preset == "ivc"
  assert isinstance(unseen, D.UnseenTransform) and unseen.name == "random_cut"
  for transform in (tend, unseen):
    assert isinstance(transform, grain.transforms.RandomMap)
  # Defaults live in the configs: a config without the field names it.
  empty = ml_collections.ConfigDict()
  with pytest.raises(AttributeError, match="distortion_preset"):
    TRANSFORMS.get("tend_distortion")(empty)
  with pytest.raises(AttributeError, match="unseen_transform"):
    TRANSFORMS.get("unseen_transform")(empty)
  assert (
    TRANSFORMS.get("unseen_transform")(ml_collections.ConfigDict({"unseen_transform": None})).name
    is None
  )

  image = radiograph(32, channels=1)
  examples = [{"image": image + 0.01 * i, "label": np.int32(i)} for i in range(6)]
  dataset = grain.MapDataset.source(examples).seed(5).random_map(tend).random_map(unseen)
  first = [dataset[i] for i in range(6)]
  second = [dataset[i] for i in range(6)]
  for i, (a, b) in enumerate(zip(first, second, strict=True)):
    np.testing.assert_array_equal(a["image"], examples[i]["image"])  # the input is kept
    assert a["label"] == i and a["distorted"].shape == image.shape
    np.testing.assert_array_equal(a["distorted"], b["distorted"])  # reproducible per index
  # The unseen transform ran last: its key overwrote TEND's, with a black rectangle.
  assert all((a["distorted"] == a["image"].min()).any() for a in first)

  with pytest.raises(KeyError, match="Unknown TEND preset"):
    TRANSFORMS.get("tend_distortion")(ml_collections.ConfigDict({"distortion_preset": "isic"}))
  with pytest.raises(KeyError, match="Unknown unseen transform"):
    D.UnseenTransform(name="jpeg")
