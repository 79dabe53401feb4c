"""Tests of the phantom framework and the BAC (breast arterial calcification) phantom."""

import pickle

import numpy as np
import pytest
from scipy import ndimage

from mlsup_jax.data.phantoms import curves, source_base, textures
from mlsup_jax.data.phantoms.bac import BacPhantomSource, is_background_patch, patch_starts
from mlsup_jax.data.sources import DATASETS
from mlsup_jax.data.validation import check_example


@pytest.fixture(scope="module")
def whole():
  """50 whole training images (shared: generation is the slow part)."""
  return BacPhantomSource(split="train", num_images=50, whole_images=True, seed=0)


@pytest.fixture(scope="module")
def whole_arrays(whole):
  intensity = np.stack([whole[i]["intensity"] for i in range(len(whole))])
  labels = np.stack([whole[i]["label"] for i in range(len(whole))]) > 0
  return intensity, labels


@pytest.fixture(scope="module")
def patches():
  return BacPhantomSource(split="train", num_images=12, seed=0)


def _dice(prediction, truth):
  total = prediction.sum() + truth.sum()
  return 2.0 * np.logical_and(prediction, truth).sum() / total if total else 1.0


# ------------------------------------------------------------------------------------ framework


def test_case_rng_is_seeded_from_seed_split_and_index():
  expected = np.random.default_rng([3, 1, 7]).standard_normal(5)
  np.testing.assert_array_equal(source_base.case_rng(3, "val", 7).standard_normal(5), expected)
  assert source_base.SPLITS == {"train": 0, "val": 1, "test": 2}
  with pytest.raises(ValueError, match="Unknown split"):
    source_base.case_rng(0, "training", 0)


def test_fractal_noise_is_normalised_and_deterministic():
  a = textures.fractal_noise(np.random.default_rng(0), (64, 48), beta=3.0)
  b = textures.fractal_noise(np.random.default_rng(0), (64, 48), beta=3.0)
  assert a.shape == (64, 48) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)
  assert abs(float(a.mean())) < 1e-4 and abs(float(a.std()) - 1.0) < 1e-3
  # A rougher texture (smaller beta) has larger neighbour differences.
  rough = textures.fractal_noise(np.random.default_rng(0), (64, 48), beta=1.5)
  assert np.abs(np.diff(rough, axis=0)).mean() > np.abs(np.diff(a, axis=0)).mean()
  field = textures.smooth_random_field(np.random.default_rng(1), (8, 8, 8), 2.0)
  assert field.shape == (8, 8, 8) and abs(float(field.std()) - 1.0) < 1e-3


def test_random_curves_are_smooth_and_evenly_sampled():
  rng = np.random.default_rng(0)
  curve = curves.random_walk_curve(rng, (10.0, 20.0), 0.0, 50.0, step=0.5)
  np.testing.assert_allclose(curve[0], (10.0, 20.0))
  np.testing.assert_allclose(np.linalg.norm(np.diff(curve, axis=0), axis=1), 0.5, rtol=1e-6)
  spline = curves.spline_curve(np.array([[0.0, 0.0], [10.0, 5.0], [20.0, 0.0]]), 0.5)
  steps = np.linalg.norm(np.diff(spline, axis=0), axis=1)
  assert np.all(steps < 0.55) and np.allclose(spline[[0, -1]], [[0, 0], [20, 0]], atol=1e-6)


def test_rasterize_curve_has_the_requested_width():
  points = curves.resample_polyline(np.array([[16.0, 4.0], [16.0, 28.0]]), 0.25)
  soft, binary = curves.rasterize_curve(points, 3.0, (32, 32))
  assert binary[:, 8:24].sum(axis=0).tolist() == [3] * 16  # rows 15, 16, 17
  assert np.all(soft[15:18, 8:24] == 1.0) and np.all(soft[binary] >= 0.5)
  assert soft.max() <= 1.0 and soft.min() >= 0.0 and soft[13, 16] == 0.0
  distance, nearest = curves.polyline_distance(points, (32, 32), 2.0)
  assert distance[18, 10] == pytest.approx(2.0, abs=1e-6)
  assert np.isinf(distance[5, 10]) and nearest[5, 10] == -1  # beyond max_distance
  assert distance[16, 10] == pytest.approx(0.0, abs=1e-6) and nearest[16, 10] >= 0


def test_gaussian_blobs_and_tube_profiles():
  blobs = curves.render_gaussian_blobs((16, 16), np.array([[8.0, 8.0]]), [1.0], [0.5])
  assert blobs.max() == pytest.approx(0.5) and blobs[0, 0] == 0.0
  solid = curves.projected_tube_profile(np.array([0.0, 1.0, 2.0]), 2.0)
  hollow = curves.projected_tube_profile(np.array([0.0, 1.0, 2.0]), 2.0, 1.0)
  assert solid[0] == pytest.approx(1.0) and solid[2] == 0.0
  assert hollow[1] == pytest.approx(1.0) and hollow[0] < hollow[1]  # "tram-track"


# ------------------------------------------------------------------------------------- sources


def test_registry_entry_builds_the_source():
  assert DATASETS.get("phantom_bac") is BacPhantomSource


def test_patch_grid_is_aligned_to_the_border():
  assert patch_starts(256, 64, 48) == [0, 48, 96, 144, 192]
  assert patch_starts(100, 64, 48) == [0, 36]
  assert patch_starts(64, 64, 48) == [0]


def test_same_seed_gives_identical_arrays_and_splits_differ():
  a = BacPhantomSource(num_images=4, whole_images=True, seed=5)
  b = BacPhantomSource(num_images=4, whole_images=True, seed=5)
  for i in range(4):
    for key in ("image", "label", "intensity"):
      np.testing.assert_array_equal(a[i][key], b[i][key])
  for other in (
    BacPhantomSource(split="val", num_images=4, whole_images=True, seed=5),
    BacPhantomSource(split="test", num_images=4, whole_images=True, seed=5),
    BacPhantomSource(num_images=4, whole_images=True, seed=6),
  ):
    assert all(not np.array_equal(a[i]["image"], other[i]["image"]) for i in range(4))
  p = BacPhantomSource(num_images=4, seed=5)
  q = BacPhantomSource(num_images=4, seed=5)
  np.testing.assert_array_equal(p.patch_index, q.patch_index)
  np.testing.assert_array_equal(p[len(p) - 1]["image"], q[-1]["image"])


@pytest.mark.parametrize("whole_images", [True, False])
def test_shapes_dtypes_and_ranges(whole_images, whole, patches):
  source = whole if whole_images else patches
  size = 256 if whole_images else 64
  assert len(source) > 0
  for i in range(min(len(source), 10)):
    example = source[i]
    assert set(example) == {"image", "label", "intensity"}
    assert example["image"].shape == (size, size, 1) and example["image"].dtype == np.float32
    assert example["label"].shape == (size, size) and example["label"].dtype == np.int32
    assert example["intensity"].shape == (size, size)
    assert example["intensity"].dtype == np.float32
    assert example["image"].min() >= 0.0 and example["image"].max() <= 1.0
    assert set(np.unique(example["label"])) <= {0, 1}
    np.testing.assert_allclose(example["intensity"], example["image"][..., 0] * 255.0, rtol=1e-6)
    check_example(example, where=f"bac[{i}]", spatial_dims=2, num_classes=2, require_label=True)


def test_positive_patches_contain_calcification_and_no_background(patches):
  assert len(patches) >= 12  # several positive patches per image on average
  for i in range(len(patches)):
    example = patches[i]
    assert example["label"].sum() > 0
    assert example["intensity"].mean() > 20.0 and example["intensity"].std() > 10.0


def test_patches_are_the_grid_windows_that_qualify():
  source = BacPhantomSource(num_images=6, seed=2, positive_only=False)
  images = BacPhantomSource(num_images=6, seed=2, whole_images=True)
  starts = patch_starts(256, 64, 48)
  expected, background = [], 0
  for image_index in range(6):
    intensity = images[image_index]["intensity"]
    for row in starts:
      for col in starts:
        if is_background_patch(intensity[row : row + 64, col : col + 64]):
          background += 1
        else:
          expected.append((image_index, row, col))
  assert background > 0  # the black background around the breast is skipped
  assert [tuple(r) for r in source.patch_index.tolist()] == expected
  image_index, row, col = source.patch_index[3]
  np.testing.assert_array_equal(
    source[3]["image"], images[int(image_index)]["image"][row : row + 64, col : col + 64]
  )
  positive = BacPhantomSource(num_images=6, seed=2, positive_only=True)
  assert 0 < len(positive) < len(source)
  assert {tuple(r) for r in positive.patch_index.tolist()} <= set(expected)


def test_about_a_fifth_of_whole_images_have_no_calcification(whole_arrays):
  _, labels = whole_arrays
  empty = float(np.mean(labels.sum(axis=(1, 2)) == 0))
  assert 0.06 <= empty <= 0.36
  assert labels.sum(axis=(1, 2)).max() > 50


def test_calcification_is_brighter_than_its_surroundings_with_variable_contrast(whole_arrays):
  intensity, labels = whole_arrays
  contrasts = []
  for image, label in zip(intensity, labels, strict=True):
    if label.any():
      ring = ndimage.binary_dilation(label, iterations=4) & ~ndimage.binary_dilation(label)
      contrasts.append(image[label].mean() - image[ring].mean())
  contrasts = np.asarray(contrasts)
  assert contrasts.mean() > 10.0  # 8-bit grey levels
  assert np.mean(contrasts > 0) > 0.9
  # From subtle to obvious: a wide spread between images.
  assert contrasts.std() / contrasts.mean() > 0.2
  assert np.percentile(contrasts, 90) > 2.0 * np.percentile(contrasts, 10)


def test_a_global_intensity_threshold_is_a_poor_segmenter(whole_arrays):
  intensity, labels = whole_arrays
  thresholds = np.arange(30, 256, 5)
  pooled = max(_dice(intensity > t, labels) for t in thresholds)
  assert pooled < 0.5
  # Even the best threshold chosen per image (an oracle) stays far from a good segmentation.
  per_image = [
    max(_dice(image > t, label) for t in thresholds)
    for image, label in zip(intensity, labels, strict=True)
    if label.any()
  ]
  assert np.mean(per_image) < 0.5


def test_whole_images_are_cached_and_reads_return_copies(patches):
  assert patches.case(0) is patches.case(0)
  first = patches[0]
  first["image"][:] = -1.0
  assert patches[0]["image"].min() >= 0.0
  restored = pickle.loads(pickle.dumps(patches))
  assert len(restored._cache) == 0
  np.testing.assert_array_equal(restored[1]["image"], patches[1]["image"])
  with pytest.raises(IndexError):
    patches[len(patches)]


def test_generation_is_cheap_enough_for_many_images():
  # No timing assertion: generating a whole 256² image is a few tens of milliseconds.
  source = BacPhantomSource(num_images=3, whole_images=True, seed=9)
  rng = source_base.case_rng(9, "train", 0)
  np.testing.assert_array_equal(source.generate(rng, 0)["image"], source[0]["image"][..., 0])


@pytest.mark.parametrize(
  ("kwargs", "match"),
  [
    ({"split": "training"}, "Unknown split"),
    ({"patch_size": 512}, "larger than image_size"),
    ({"patch_stride": 0}, "patch_stride"),
    ({"patch_stride": -8}, "patch_stride"),
    ({"image_size": 100}, "multiple of 8"),
    ({"patch_size": 60}, "multiple of 8"),
    ({"num_images": 0}, "num_images"),
    ({"seed": -1}, "seed"),
  ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    BacPhantomSource(**kwargs)
