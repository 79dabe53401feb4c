"""Partially labelled sub-datasets: erased organs, `known`, class maps, and bad input."""

import numpy as np
import pytest

from mlsup_jax.data.sources import build_source
from mlsup_jax.data.sources.partial_labels import PartialLabelSource, check_sub_datasets
from mlsup_jax.data.validation import DataError


class _Volumes:
  """Two tiny label maps with organ ids 0, 10, 20 (as NIfTI label maps might have)."""

  def __init__(self, extra_value=None):
    self.labels = [np.array([[0, 10], [20, 20]]), np.array([[10, 10], [0, 20]])]
    if extra_value is not None:
      self.labels[1][0, 0] = extra_value

  def __len__(self):
    return 2

  def __getitem__(self, i):
    return {"image": np.zeros((2, 2, 1), np.float32), "label": self.labels[i].copy()}


MAP = {0: 0, 10: 1, 20: 2}


def test_unknown_organs_are_erased_and_known_is_carried():
  spleen_only = PartialLabelSource(_Volumes(), ("liver", "spleen"), ("spleen",), MAP, title="s")
  example = spleen_only[0]
  assert example["label"].tolist() == [[0, 0], [2, 2]]
  assert example["known"].tolist() == [False, True]
  both = PartialLabelSource(_Volumes(), ("liver", "spleen"), ("liver", "spleen"), MAP)
  assert both[1]["label"].tolist() == [[1, 1], [0, 2]]
  subset = PartialLabelSource(_Volumes(), ("liver", "spleen"), ("liver",), MAP, indices=[1])
  assert len(subset) == 1 and subset[0]["label"].tolist() == [[1, 1], [0, 0]]


def test_registered_and_built_from_a_config():
  source = build_source(
    {
      "name": "partial_labels",
      "base": {"name": "phantom_abdomen", "split": "train", "num_cases": 3, "image_size": 32},
      "organs": ("liver", "lesion"),
      "known": ("lesion",),
      "class_map": {0: 0, 1: 1, 2: 2, 3: 2, 4: 2},
    }
  )
  example = source[0]
  assert example["known"].tolist() == [False, True]
  assert set(np.unique(example["label"]).tolist()) <= {0, 2}


def test_bad_input_is_one_clear_error():
  organs = ("liver", "spleen")
  with pytest.raises(ValueError, match=r"known organ\(s\) \['kidney'\]"):
    PartialLabelSource(_Volumes(), organs, ("kidney",), MAP)
  with pytest.raises(ValueError, match="must map values"):
    PartialLabelSource(_Volumes(), organs, ("liver",), {0: 0, 10: 5})
  with pytest.raises(ValueError, match="no examples"):
    PartialLabelSource(_Volumes(), organs, ("liver",), MAP, indices=[])
  unnamed = PartialLabelSource(_Volumes(extra_value=15), organs, ("liver",), MAP)
  with pytest.raises(DataError, match=r"label value\(s\) \[15\]"):
    unnamed[1]
  too_big = PartialLabelSource(_Volumes(extra_value=30), organs, ("liver",), MAP)
  with pytest.raises(DataError, match="does not name"):
    too_big[1]


def test_check_sub_datasets_warns_about_never_annotated_organs():
  organs = ("liver", "spleen", "kidney")
  subs = [
    PartialLabelSource(_Volumes(), organs, ("liver",), MAP, title="a"),
    PartialLabelSource(_Volumes(), organs, ("spleen",), MAP, title="b"),
  ]
  with pytest.warns(UserWarning, match=r"\['kidney'\]"):
    check_sub_datasets(subs)
  with pytest.raises(ValueError, match="No partially"):
    check_sub_datasets([])
  other = PartialLabelSource(_Volumes(), ("liver", "spleen"), ("liver",), MAP, title="c")
  with pytest.raises(ValueError, match="has organs"):
    check_sub_datasets([subs[0], other])
