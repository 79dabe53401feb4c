"""Tests of the IVC-filter phantom (TEND's IVC setting, spec S5.7; CVAD's IVC intra-class OOD)."""

import itertools
import pickle

import ml_collections
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from configs import cvad, reconstruction_detector, tend
from mlsup_jax.data.phantoms.ivc_filter import (
  CLASS_NAMES,
  DEFAULT_CLASS_WEIGHTS,
  DESIGNS,
  IvcFilterPhantomSource,
)
from mlsup_jax.data.phantoms.source_base import case_rng, class_stream
from mlsup_jax.data.sources import build_source
from mlsup_jax.data.sources.ood_splits import OodSplitSource
from mlsup_jax.data.validation import check_example

NUM_STATS = 200


@pytest.fixture(scope="module")
def stats_set():
  source = IvcFilterPhantomSource("test", NUM_STATS, seed=0, cache_size=0)
  images = np.stack([source[i]["image"][..., 0] for i in range(NUM_STATS)])
  return images, np.asarray(source.class_ids)


def test_examples_have_the_documented_keys_shapes_and_range():
  for size in (64, 48):
    source = IvcFilterPhantomSource("train", 6, seed=2, image_size=size)
    for i in range(len(source)):
      example = source[i]
      assert set(example) == {"image", "class_id"}
      image = example["image"]
      assert image.shape == (size, size, 1) and image.dtype == np.float32
      assert 0.0 <= image.min() and image.max() <= 1.0
      assert int(example["class_id"]) == source.class_ids[i]
      check_example(
        example, where="ivc_filter", spatial_dims=2, num_classes=None, require_label=False
      )
  assert source.class_names == CLASS_NAMES == IvcFilterPhantomSource.CLASS_NAMES
  assert tuple(DESIGNS) == CLASS_NAMES


def test_cases_are_deterministic_independent_of_order_and_picklable():
  a = IvcFilterPhantomSource("val", 5, seed=3)
  b = IvcFilterPhantomSource("val", 5, seed=3, cache_size=0)
  for i in (4, 0, 2):
    np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
  assert not np.array_equal(a[0]["image"], a[1]["image"])
  assert not np.array_equal(a[0]["image"], IvcFilterPhantomSource("test", 5, 3)[0]["image"])
  restored = pickle.loads(pickle.dumps(a))
  np.testing.assert_array_equal(restored[2]["image"], b[2]["image"])


def test_classes_are_known_without_rendering_and_follow_the_weights(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("class_ids must not render images")

  monkeypatch.setattr(IvcFilterPhantomSource, "render", refuse)
  short = IvcFilterPhantomSource("train", 10, seed=5)
  long = IvcFilterPhantomSource("train", 50, seed=5)
  np.testing.assert_array_equal(long.class_ids[:10], short.class_ids)
  counts = np.bincount(class_stream(0, "train", 4000, DEFAULT_CLASS_WEIGHTS), minlength=8)
  np.testing.assert_allclose(counts / counts.sum(), DEFAULT_CLASS_WEIGHTS, atol=0.03)
  assert np.argmax(counts) == 0  # the ID design is the largest class, as Option in IVC
  weights = (1, 0, 0, 0, 0, 0, 0, 1)
  only = IvcFilterPhantomSource("train", 200, seed=0, class_weights=weights).class_ids
  assert set(np.unique(only)) == {0, 7}


@pytest.mark.parametrize("class_id", range(1, 8))
def test_designs_change_only_the_device(class_id):
  """The same case rendered with another design: same patient, pose and exposure, so the images
  differ only where the device is, and there by a lot (metal)."""
  source = IvcFilterPhantomSource("test", 4, seed=1)
  reference = source.render(case_rng(1, "test", 0), 0)
  other = source.render(case_rng(1, "test", 0), class_id)
  changed = np.abs(other - reference) > 0.05
  assert 0.01 < changed.mean() < 0.2, (CLASS_NAMES[class_id], changed.mean())
  np.testing.assert_array_equal(reference, source.render(case_rng(1, "test", 0), 0))


def test_designs_are_distinct_shapes_in_the_same_pose():
  """Every pair of designs overlaps by less than 80% (IoU of the wire masks) in one pose."""
  source = IvcFilterPhantomSource("test", 1, seed=0, image_size=128)
  for seed in range(3):
    pose = source._pose(np.random.default_rng(seed))
    masks = {name: source.device_density(name, pose) > 0.1 for name in DESIGNS}
    for a, b in itertools.combinations(DESIGNS, 2):
      iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
      assert iou < 0.8, (a, b, iou)


def test_global_statistics_do_not_separate_designs_but_a_supervised_model_can(stats_set):
  """Intra-class OOD: the image mean / std do not tell the ID design from the others (measured
  0.53–0.57 AUROC on seeds 0 and 1), while a supervised linear model on 8×8 thumbnails does
  (0.82–0.84): the designs differ in shape, not in overall brightness."""
  images, class_ids = stats_set
  ood = (class_ids > 0).astype(int)
  assert 80 < ood.sum() < 160

  def two_sided(scores):
    auroc = roc_auc_score(ood, scores)
    return max(auroc, 1.0 - auroc)

  assert two_sided(images.mean(axis=(1, 2))) < 0.65
  assert two_sided(images.std(axis=(1, 2))) < 0.65
  thumbnails = images.reshape(NUM_STATS, 8, 8, 8, 8).mean(axis=(2, 4)).reshape(NUM_STATS, -1)
  model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
  folds = StratifiedKFold(5, shuffle=True, random_state=0)
  scores = cross_val_predict(model, thumbnails, ood, cv=folds, method="predict_proba")[:, 1]
  assert roc_auc_score(ood, scores) > 0.75


def test_registered_built_from_a_config_and_split_one_vs_rest():
  config = ml_collections.ConfigDict(
    {"name": "phantom_ivc_filter", "split": "val", "num_cases": 40, "seed": 1, "image_size": 32}
  )
  source = build_source(config)
  assert isinstance(source, IvcFilterPhantomSource) and source[0]["image"].shape == (32, 32, 1)
  split = OodSplitSource(source, id_classes=(0,), role="test", seed=0)
  ood = np.asarray([split[i]["ood"] for i in range(len(split))])
  classes = np.asarray([split[i]["class_id"] for i in range(len(split))])
  np.testing.assert_array_equal(ood, (classes > 0).astype(int))


def test_anomaly_configs_take_the_ivc_dataset_with_the_authors_ivc_distortions():
  config = tend.get_config("smoke,dataset=ivc_filter")
  assert config.data.train_source.base.name == "phantom_ivc_filter"
  assert config.data.class_names == CLASS_NAMES
  assert config.data.distortion_preset == "ivc"
  assert tend.get_config("smoke").data.distortion_preset == "rsna"
  for module, arg in (
    (cvad, "dataset=ivc_filter"),
    (reconstruction_detector, "dataset=ivc_filter"),
  ):
    data = module.get_config(arg).data
    assert data.eval_source.base.name == "phantom_ivc_filter"
    assert data.eval_source.protocol == "one_vs_rest" and data.eval_source.id_classes == (0,)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"image_size": 16}, "image_size"),
    ({"class_weights": (1, 1)}, "8 entries"),
    ({"class_weights": (1, -1, 0, 0, 0, 0, 0, 0)}, "non-negative"),
    ({"split": "holdout"}, "Unknown split"),
  ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    IvcFilterPhantomSource(**{"split": "train", "num_cases": 4, "seed": 0, **kwargs})
  with pytest.raises(ValueError, match="class_id"):
    IvcFilterPhantomSource("train", 1).render(case_rng(0, "train", 0), 8)
