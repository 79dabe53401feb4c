"""Labelled and unlabelled parts of a labelled source, split by patient (semi-supervised data).

`SemiSupervisedSplit(base, role, num_labelled)` keeps the examples of the first `num_labelled`
patients (in patient order, as SSL4MIS's "1 / 3 / 7 labelled ACDC patients" are the first slices
of its training list) as the `labelled` role and the examples of every other patient, without
their labels, as the `unlabelled` role. Two stream sections with the same base and the two roles
give a semi-supervised run disjoint labelled and unlabelled streams, on a phantom or a user's
NIfTI / nnU-Net data alike.

A patient is what the base says it is: its `patient_ids` attribute (one id per example, e.g. the
cardiac phantom's), else its `case_ids`, else every example on its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlsup_jax.data.sources import as_source
from mlsup_jax.data.validation import DataError

ROLES = ("labelled", "unlabelled")


def patient_ids(base) -> np.ndarray:
  """`[N]` patient id of every example of `base` (see the module docstring)."""
  for name in ("patient_ids", "case_ids"):
    ids = getattr(base, name, None)
    if ids is not None and len(ids) == len(base):
      return np.asarray(ids)
  return np.arange(len(base))


class SemiSupervisedSplit:
  """One role of a patient-level labelled / unlabelled split of `base`.

  Args:
    base: a dataset config (dict / ConfigDict with `name`) or a random-access source.
    role: "labelled" (the first `num_labelled` patients, with labels) or "unlabelled" (the
      others, `label` removed).
    num_labelled: patients that keep their labels, ≥ 1 and fewer than the base has.

  Attributes:
    patient_ids: `[N]` the patient of each example of this role; `num_patients`.

  Raises:
    DataError: an unknown role, or a `num_labelled` that leaves no labelled patient or no
      unlabelled one.

  Example:
    >>> from mlsup_jax.data.sources.labelled_split import SemiSupervisedSplit
    >>> base = {"name": "phantom_cardiac", "num_patients": 5, "slices": 4, "image_size": 32}
    >>> labelled = SemiSupervisedSplit(base, "labelled", num_labelled=2)
    >>> unlabelled = SemiSupervisedSplit(base, "unlabelled", num_labelled=2)
    >>> len(labelled), len(unlabelled), sorted(unlabelled[0])
    (8, 12, ['image', 'patient', 'slice'])
  """

  def __init__(self, base, role: str, num_labelled: int):
    if role not in ROLES:
      raise DataError(f"semi_supervised_split role {role!r} is not one of {ROLES}.")
    self.base = as_source(base)
    ids = patient_ids(self.base)
    patients = list(dict.fromkeys(sorted(ids.tolist())))
    num_labelled = int(num_labelled)
    if not 1 <= num_labelled < len(patients):
      raise DataError(
        f"semi_supervised_split: num_labelled={num_labelled} must leave at least one labelled "
        f"and one unlabelled patient; the base has {len(patients)} patients."
      )
    labelled = set(patients[:num_labelled])
    keep = np.array([(p in labelled) == (role == "labelled") for p in ids.tolist()])
    self.indices = np.flatnonzero(keep)
    self.role = role
    self.patient_ids = ids[self.indices]
    self.num_patients = num_labelled if role == "labelled" else len(patients) - num_labelled
    for name in ("class_names", "CLASS_NAMES"):
      if hasattr(self.base, name):
        setattr(self, name, getattr(self.base, name))

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index) -> dict[str, Any]:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"SemiSupervisedSplit index {index} out of range [0, {len(self)}).")
    example = self.base[int(self.indices[index])]
    if self.role == "unlabelled":
      example = {k: v for k, v in example.items() if k != "label"}
    return example
