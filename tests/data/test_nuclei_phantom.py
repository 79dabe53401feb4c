"""The fluorescence nuclei phantom: deterministic, clumps of 2–6 touching nuclei, exact
instances, DAPI in blue, bad arguments."""

import numpy as np
import pytest
from scipy import ndimage

from mlsup_jax.data.phantoms.nuclei import NucleiPhantomSource
from mlsup_jax.data.sources import build_source


def test_deterministic_and_splits_differ():
  a = NucleiPhantomSource(num_cases=2, image_size=128, nucleus_radius=8)[1]
  b = NucleiPhantomSource(num_cases=2, image_size=128, nucleus_radius=8)[1]
  np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(a["label"], b["label"])
  c = NucleiPhantomSource(split="test", num_cases=2, image_size=128, nucleus_radius=8)[1]
  assert not np.array_equal(a["label"], c["label"])


def test_clumps_touch_and_isolated_nuclei_do_not():
  source = build_source({"name": "phantom_nuclei", "num_cases": 3, "image_size": 192})
  sizes = []
  for case in (source[i] for i in range(3)):
    label, clump = case["label"], case["clump"]
    ids = np.unique(label)[1:]
    assert len(ids) == int(case["num_nuclei"])  # every nucleus keeps pixels
    assert int(case["num_clumps"]) >= 2
    for k in np.unique(clump)[1:]:
      members = np.unique(label[clump == k])
      sizes.append(len(members))
      # A clump is one connected foreground component.
      components, count = ndimage.label(clump == k)
      assert count == 1
    # Each isolated nucleus is its own component of the foreground.
    foreground, _ = ndimage.label(label > 0)
    for i in ids:
      if clump[label == i][0] == 0:
        assert len(np.unique(label[foreground == foreground[label == i][0]])) == 1
  assert min(sizes) >= 2 and max(sizes) <= 6


def test_dapi_is_the_blue_channel():
  case = NucleiPhantomSource(num_cases=1, image_size=128, nucleus_radius=8)[0]
  inside, outside = case["label"] > 0, case["label"] == 0
  blue = case["image"][..., 2]
  assert blue[inside].mean() > blue[outside].mean() + 0.3
  assert case["image"].dtype == np.float32 and case["image"].shape == (128, 128, 3)


def test_bad_arguments():
  with pytest.raises(ValueError, match="image_size"):
    NucleiPhantomSource(image_size=32)
  with pytest.raises(ValueError, match="nucleus_radius"):
    NucleiPhantomSource(image_size=128, nucleus_radius=40)
