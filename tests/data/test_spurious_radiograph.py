"""The spurious-marker radiograph phantom: group frequencies, determinism, the marker alone."""

import numpy as np
import pytest

from mlsup_jax.data.phantoms.spurious_radiograph import (
  BALANCED_GROUP_WEIGHTS,
  SpuriousRadiographSource,
)


def test_training_groups_follow_the_correlation_and_validation_is_balanced():
  train = SpuriousRadiographSource("train", num_cases=4000, image_size=32)
  agree = np.mean(train.markers == train.findings)
  assert 0.94 < agree < 0.96
  assert 0.47 < train.findings.mean() < 0.53
  val = SpuriousRadiographSource("val", 4000, image_size=32, group_weights=BALANCED_GROUP_WEIGHTS)
  np.testing.assert_allclose(np.bincount(val.groups) / 4000, 0.25, atol=0.02)
  np.testing.assert_array_equal(val.groups, 2 * val.findings + val.markers)


def test_cases_are_deterministic_and_labels_match():
  a = SpuriousRadiographSource("test", 8, seed=2, image_size=32, label="group")
  b = SpuriousRadiographSource("test", 8, seed=2, image_size=32, label="group")
  for i in range(8):
    np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
    assert int(a[i]["class_id"]) == int(a.groups[i])
  assert a.class_names[3] == "finding, marker"


def test_the_marker_only_changes_a_top_corner():
  """The same case with and without the marker differs only in the top quarter's corners."""
  weights_marker = (0.0, 1.0, 0.0, 0.0)
  weights_plain = (1.0, 0.0, 0.0, 0.0)
  marked = SpuriousRadiographSource("val", 4, image_size=64, group_weights=weights_marker)
  plain = SpuriousRadiographSource("val", 4, image_size=64, group_weights=weights_plain)
  for i in range(4):
    difference = np.abs(marked[i]["image"] - plain[i]["image"])[..., 0]
    assert difference.max() > 0.2
    rows, cols = np.nonzero(difference)
    assert rows.max() < 64 // 4 + 12
    assert np.all((cols < 24) | (cols >= 40))


def test_bad_arguments():
  with pytest.raises(ValueError, match="finding"):
    SpuriousRadiographSource(finding="normal")
  with pytest.raises(ValueError, match="label"):
    SpuriousRadiographSource(label="marker")
  with pytest.raises(ValueError, match="group_weights"):
    SpuriousRadiographSource(group_weights=(1, 1))
  with pytest.raises(ValueError, match="marker_contrast"):
    SpuriousRadiographSource(marker_contrast=0)
