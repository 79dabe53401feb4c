"""Tests of the chest-radiograph phantom (TEND / CVAD intra-class OOD, spec S5.7)."""

import pickle

import ml_collections
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlsup_jax.data.phantoms.radiograph import (
  CLASS_NAMES,
  DEFAULT_CLASS_WEIGHTS,
  ChestRadiographPhantomSource,
  class_stream,
)
from mlsup_jax.data.phantoms.source_base import case_rng
from mlsup_jax.data.sources import build_source
from mlsup_jax.data.validation import check_example

NUM_SUBTLETY = 200


def thumbnails(images: np.ndarray) -> np.ndarray:
  """`[N, 64, 64]` → `[N, 64]`: 8×8 block means, flattened."""
  return images.reshape(len(images), 8, 8, 8, 8).mean(axis=(2, 4)).reshape(len(images), -1)


def two_sided_auroc(labels, scores) -> float:
  """AUROC of the better direction: a statistic separates if high *or* low means abnormal."""
  auroc = roc_auc_score(labels, scores)
  return max(auroc, 1.0 - auroc)


@pytest.fixture(scope="module")
def subtlety_set():
  source = ChestRadiographPhantomSource("test", NUM_SUBTLETY, seed=0, cache_size=0)
  images = np.stack([source[i]["image"][..., 0] for i in range(NUM_SUBTLETY)])
  return images, np.asarray(source.class_ids)


def test_examples_have_the_documented_keys_shapes_and_range():
  for size in (64, 48):
    source = ChestRadiographPhantomSource("train", 6, seed=2, image_size=size)
    for i in range(len(source)):
      example = source[i]
      assert set(example) == {"image", "class_id"}
      image = example["image"]
      assert image.shape == (size, size, 1) and image.dtype == np.float32
      assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.1
      assert example["class_id"].shape == () and example["class_id"].dtype == np.int32
      assert int(example["class_id"]) == source.class_ids[i]
      check_example(
        example, where="radiograph", spatial_dims=2, num_classes=None, require_label=False
      )
  assert source.class_names == CLASS_NAMES == ChestRadiographPhantomSource.CLASS_NAMES


def test_anatomy_is_a_radiograph_dark_lungs_bright_mediastinum_black_air():
  source = ChestRadiographPhantomSource("val", 8, seed=0)
  images = np.stack([source[i]["image"][..., 0] for i in range(len(source))])
  mean = images.mean(axis=0)
  # Lung fields (left and right of the centre, mid-height) are darker than the mediastinum
  # between them, and the air outside the body (top corners) is darkest.
  lungs = (mean[20:36, 10:22].mean() + mean[20:36, 42:54].mean()) / 2.0
  mediastinum = mean[20:36, 29:35].mean()
  corners = (mean[:4, :4].mean() + mean[:4, -4:].mean()) / 2.0
  assert corners < lungs < mediastinum, (corners, lungs, mediastinum)


def test_cases_are_deterministic_independent_of_order_and_picklable():
  a = ChestRadiographPhantomSource("val", 5, seed=3)
  b = ChestRadiographPhantomSource("val", 5, seed=3, cache_size=0)
  for i in (4, 0, 2):
    np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
  assert not np.array_equal(a[0]["image"], a[1]["image"])
  assert not np.array_equal(a[0]["image"], ChestRadiographPhantomSource("test", 5, 3)[0]["image"])
  assert not np.array_equal(a[0]["image"], ChestRadiographPhantomSource("val", 5, 4)[0]["image"])
  # Reads are copies: modifying one does not change the cached case.
  first = a[0]
  first["image"][:] = 0.0
  assert a[0]["image"].max() > 0.0
  restored = pickle.loads(pickle.dumps(a))
  np.testing.assert_array_equal(restored[2]["image"], b[2]["image"])


def test_classes_are_known_without_rendering_and_extend_with_num_cases(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("class_ids must not render images")

  monkeypatch.setattr(ChestRadiographPhantomSource, "render", refuse)
  short = ChestRadiographPhantomSource("train", 10, seed=5)
  long = ChestRadiographPhantomSource("train", 50, seed=5)
  np.testing.assert_array_equal(long.class_ids[:10], short.class_ids)
  assert long.class_ids.dtype == np.int32 and not long.class_ids.flags.writeable
  other_split = ChestRadiographPhantomSource("val", 50, seed=5)
  assert not np.array_equal(other_split.class_ids, long.class_ids)


def test_class_frequencies_follow_the_weights():
  counts = np.bincount(class_stream(0, "train", 4000, DEFAULT_CLASS_WEIGHTS), minlength=5)
  frequencies = counts / counts.sum()
  np.testing.assert_allclose(frequencies, DEFAULT_CLASS_WEIGHTS, atol=0.03)
  assert np.argmax(counts) == 0  # normal is the largest class, as in RSNA
  source = ChestRadiographPhantomSource("train", 400, seed=0, class_weights=(1, 0, 0, 0, 3))
  counts = np.bincount(source.class_ids, minlength=5)
  assert counts[1] == counts[2] == counts[3] == 0
  assert 0.18 < counts[0] / 400 < 0.32 and counts[0] + counts[4] == 400


@pytest.mark.parametrize("class_id", [1, 2, 3, 4])
def test_findings_are_local_and_leave_the_anatomy_unchanged(class_id):
  """Each abnormal image equals its normal twin (same anatomy and exposure) outside a small
  region, where the finding adds density (brighter)."""
  source = ChestRadiographPhantomSource("test", 60, seed=1)
  index = int(np.flatnonzero(source.class_ids == class_id)[0])
  abnormal = source[index]["image"][..., 0]
  twin = source.render(case_rng(1, "test", index), 0)
  difference = abnormal - twin
  changed = np.abs(difference) > 0.01
  assert 0.0 < changed.mean() < 0.15, (CLASS_NAMES[class_id], changed.mean())
  assert difference[changed].mean() > 0.0
  # Normal cases are their own twins.
  normal = int(np.flatnonzero(source.class_ids == 0)[0])
  np.testing.assert_array_equal(
    source[normal]["image"][..., 0], source.render(case_rng(1, "test", normal), 0)
  )


def test_findings_are_subtle_for_global_statistics_and_coarse_linear_models(subtlety_set):
  """Intra-class OOD: neither the image mean / std nor a linear model on 8×8 thumbnails tells
  abnormal from normal (both measured at 0.49–0.58 AUROC over seeds)."""
  images, class_ids = subtlety_set
  abnormal = (class_ids > 0).astype(int)
  assert 40 < abnormal.sum() < 160
  mean_auroc = two_sided_auroc(abnormal, images.mean(axis=(1, 2)))
  std_auroc = two_sided_auroc(abnormal, images.std(axis=(1, 2)))
  model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
  folds = StratifiedKFold(5, shuffle=True, random_state=0)
  scores = cross_val_predict(model, thumbnails(images), abnormal, cv=folds, method="predict_proba")[
    :, 1
  ]
  linear_auroc = roc_auc_score(abnormal, scores)
  print(
    f"normal vs abnormal AUROC: mean {mean_auroc:.3f}, std {std_auroc:.3f}, "
    f"8x8 logistic regression {linear_auroc:.3f}"
  )
  assert mean_auroc < 0.65 and std_auroc < 0.65
  assert linear_auroc < 0.7


def test_registered_and_built_from_a_config():
  config = ml_collections.ConfigDict(
    {"name": "phantom_radiograph", "split": "val", "num_cases": 3, "seed": 1, "image_size": 32}
  )
  source = build_source(config)
  assert isinstance(source, ChestRadiographPhantomSource)
  assert len(source) == 3 and source[0]["image"].shape == (32, 32, 1)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"image_size": 16}, "image_size"),
    ({"class_weights": (1, 1)}, "5 entries"),
    ({"class_weights": (1, -1, 0, 0, 0)}, "non-negative"),
    ({"class_weights": (0, 0, 0, 0, 0)}, "not all zero"),
    ({"split": "holdout"}, "Unknown split"),
    ({"num_cases": 0}, "num_cases"),
  ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, match):
  arguments = {"split": "train", "num_cases": 4, "seed": 0, **kwargs}
  with pytest.raises(ValueError, match=match):
    ChestRadiographPhantomSource(**arguments)


def test_render_rejects_an_unknown_class():
  source = ChestRadiographPhantomSource("train", 1, seed=0)
  with pytest.raises(ValueError, match="class_id"):
    source.render(case_rng(0, "train", 0), 5)
