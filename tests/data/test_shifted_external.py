"""The shifted radiograph phantom (MedShift's sites) and the index-subset source."""

import numpy as np
import pytest

from mlsup_jax.data.phantoms.radiograph import ChestRadiographPhantomSource
from mlsup_jax.data.phantoms.shifted_external import SHIFT_TYPES, ShiftedRadiographSource
from mlsup_jax.data.sources import build_source
from mlsup_jax.data.sources.subset import IndexSubsetSource

FRACTIONS = (0.1, 0.1, 0.1, 0.1, 0.1)


def test_deterministic_flags_match_examples():
  a = ShiftedRadiographSource("train", 60, seed=3, image_size=32, shift_fractions=FRACTIONS)
  b = ShiftedRadiographSource("train", 60, seed=3, image_size=32, shift_fractions=FRACTIONS)
  for i in range(60):
    ea, eb = a[i], b[i]
    np.testing.assert_array_equal(ea["image"], eb["image"])
    assert int(ea["shift_type"]) == a.shift_types[i]
    assert int(ea["shifted"]) == int(a.shift_types[i] > 0)
    assert int(ea["class_id"]) == a.class_ids[i]
    assert ea["image"].shape == (32, 32, 1) and ea["image"].dtype == np.float32
    assert 0.0 <= ea["image"].min() and ea["image"].max() <= 1.0
  # Every shift type occurs at 10% each over 60 cases, and about half are unshifted.
  assert set(np.unique(a.shift_types)) == set(range(len(SHIFT_TYPES)))
  noisy = a.shift_types == SHIFT_TYPES.index("label_noise")
  assert np.all(a.class_ids[noisy] != a.true_class_ids[noisy])
  assert np.all(a.class_ids[~noisy] == a.true_class_ids[~noisy])


def test_unshifted_cases_are_the_radiograph_phantom():
  shifted = ShiftedRadiographSource("val", 40, seed=1, image_size=32, shift_fractions=FRACTIONS)
  base = ChestRadiographPhantomSource("val", 40, seed=1, image_size=32)
  changed = 0
  for i in range(40):
    same = np.array_equal(shifted[i]["image"], base[i]["image"])
    kind = SHIFT_TYPES[shifted.shift_types[i]]
    if kind in ("none", "label_noise"):
      assert same, i
    else:
      changed += not same
  assert changed == np.sum(np.isin(shifted.shift_types, [1, 2, 3, 4]))


def test_clean_source_has_no_shift_and_bad_fractions_raise():
  clean = ShiftedRadiographSource("train", 30, seed=0, image_size=32)
  assert not clean.shifted.any()
  with pytest.raises(ValueError, match="sum to ≤ 1"):
    ShiftedRadiographSource("train", 4, image_size=32, shift_fractions=(0.5, 0.5, 0.5, 0, 0))
  with pytest.raises(ValueError, match="5 entries|entries"):
    ShiftedRadiographSource("train", 4, image_size=32, shift_fractions=(0.1,))


def test_index_subset_from_config(tmp_path):
  base = {"name": "phantom_shifted_radiograph", "split": "train", "num_cases": 20,
          "seed": 2, "image_size": 32, "shift_fractions": FRACTIONS}  # fmt: skip
  indices = np.array([5, 0, 19])
  np.save(tmp_path / "idx.npy", indices)
  import ml_collections

  subset = build_source(
    ml_collections.ConfigDict(
      {"name": "index_subset", "base": base, "indices_file": str(tmp_path / "idx.npy")}
    )
  )
  full = build_source(ml_collections.ConfigDict(base))
  assert len(subset) == 3
  np.testing.assert_array_equal(subset.class_ids, full.class_ids[indices])
  np.testing.assert_array_equal(subset.shifted, full.shifted[indices])
  np.testing.assert_array_equal(subset[1]["image"], full[0]["image"])
  with pytest.raises(ValueError, match="out of range|span"):
    IndexSubsetSource(full, indices=[0, 20])
  with pytest.raises(ValueError, match="exactly one"):
    IndexSubsetSource(full)
