"""The ACDC-like cardiac phantom and the patient-level labelled / unlabelled split."""

from __future__ import annotations

import numpy as np
import pytest

from mlsup_jax.data.phantoms.cardiac import CardiacPhantomSource
from mlsup_jax.data.sources import build_source
from mlsup_jax.data.sources.labelled_split import SemiSupervisedSplit
from mlsup_jax.data.validation import DataError

SLICES = 6


@pytest.fixture(scope="module")
def train():
  return CardiacPhantomSource("train", num_patients=6, slices=SLICES, image_size=48)


def test_examples_are_slices_of_patient_volumes(train):
  assert len(train) == 6 * SLICES
  example = train[SLICES + 2]
  assert example["image"].shape == (48, 48, 1) and example["image"].dtype == np.float32
  assert example["label"].shape == (48, 48) and example["label"].dtype == np.int32
  assert int(example["patient"]) == 1 and int(example["slice"]) == 2
  assert set(np.unique(example["label"])) <= {0, 1, 2, 3}
  np.testing.assert_array_equal(train.patient_ids, np.repeat(np.arange(6), SLICES))
  assert np.all(np.isfinite(example["image"]))


def test_deterministic_and_patients_differ(train):
  again = CardiacPhantomSource("train", num_patients=6, slices=SLICES, image_size=48)
  np.testing.assert_array_equal(train[7]["image"], again[7]["image"])
  assert not np.array_equal(train[0]["label"], train[SLICES]["label"])
  test = CardiacPhantomSource("test", num_patients=6, slices=SLICES, image_size=48)
  assert not np.array_equal(train[0]["image"], test[0]["image"])  # disjoint splits


def test_anatomy_shrinks_to_the_apex_and_classes_are_imbalanced(train):
  labels = np.stack([train[i]["label"] for i in range(len(train))]).reshape(6, SLICES, 48, 48)
  fractions = [(labels == k).mean() for k in range(4)]
  assert fractions[0] > 0.85  # background dominates
  assert 0 < fractions[1] < fractions[3] and 0 < fractions[2]  # RV smaller than the LV cavity
  lv_area = (labels == 3).sum(axis=(2, 3))  # [patient, slice]
  assert np.all(lv_area[:, 0] > lv_area[:, -1])  # base larger than apex
  assert not (labels[:, -1] == 1).any()  # no RV at the apex
  assert (labels[:, 0] == 1).any(axis=(1, 2)).all()  # an RV at every base
  # Blood is bright, myocardium dark: the cavity is separable, the myocardium's rim is not.
  images = np.stack([train[i]["image"][..., 0] for i in range(len(train))]).reshape(labels.shape)
  assert images[labels == 3].mean() > images[labels == 2].mean() + 0.3


def test_split_by_patient_into_labelled_and_unlabelled(train):
  labelled = SemiSupervisedSplit(train, "labelled", num_labelled=2)
  unlabelled = SemiSupervisedSplit(train, "unlabelled", num_labelled=2)
  assert len(labelled) == 2 * SLICES and len(unlabelled) == 4 * SLICES
  assert set(labelled.patient_ids) == {0, 1} and set(unlabelled.patient_ids) == {2, 3, 4, 5}
  assert "label" in labelled[0] and "label" not in unlabelled[0]
  np.testing.assert_array_equal(unlabelled[0]["image"], train[2 * SLICES]["image"])


def test_split_works_on_any_source_by_case_ids():
  class Folder:
    case_ids = ["a", "a", "b", "c", "c", "c"]

    def __len__(self):
      return 6

    def __getitem__(self, i):
      return {"image": np.full((4, 4, 1), i, np.float32), "label": np.zeros((4, 4), np.int32)}

  labelled = SemiSupervisedSplit(Folder(), "labelled", num_labelled=1)
  assert [int(labelled[i]["image"][0, 0, 0]) for i in range(len(labelled))] == [0, 1]


@pytest.mark.parametrize("num_labelled", [0, 6, 7])
def test_a_split_that_leaves_a_role_empty_is_a_clear_error(train, num_labelled):
  with pytest.raises(DataError, match="at least one labelled and one unlabelled patient"):
    SemiSupervisedSplit(train, "labelled", num_labelled=num_labelled)


def test_streams_from_the_two_roles_by_config():
  base = {"name": "phantom_cardiac", "num_patients": 4, "slices": 4, "image_size": 32}
  source = build_source({"name": "semi_supervised_split", "base": base, "role": "unlabelled",
                         "num_labelled": 1})  # fmt: skip
  assert len(source) == 12
  with pytest.raises(DataError, match="role"):
    build_source({"name": "semi_supervised_split", "base": base, "role": "weak", "num_labelled": 1})
