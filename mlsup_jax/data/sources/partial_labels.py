"""Partially labelled sub-datasets of a multi-organ source (LTUDA, seed 002).

Public abdominal CT sets each label one or a few organs. `PartialLabelSource` makes such a
sub-dataset from any fully labelled multi-organ source (the abdominal phantom, NIfTI label maps,
an nnU-Net raw dataset): it keeps the base's examples `indices`, maps the base's label values to
the study's organs with `class_map`, erases the organs this sub-dataset does not annotate (they
become 0 = "background or unannotated"), and adds `known: [O]` bool — which organs the example's
label covers — so the losses can mask per sample (`losses/partial_labels.py`).

Organs are numbered 1 … O in the output label maps, in the order of `organs`. `class_map` maps
every base label value to an organ number (0 = background); a base value it does not name is an
error when read (a label map with an organ the study does not know about), and a map onto a
number outside 0 … O is an error at construction. `check_sub_datasets` checks a set of them
before training: every `known` organ named in `organs`, no empty sub-dataset, and a warning for
an organ that no sub-dataset annotates.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlsup_jax.data.sources import as_source
from mlsup_jax.data.validation import DataError

__all__ = ["PartialLabelSource", "check_sub_datasets"]


class PartialLabelSource:
  """A sub-dataset that annotates only the organs `known` (module docstring).

  Example:
    >>> from mlsup_jax.data.sources.partial_labels import PartialLabelSource
    >>> base = {"name": "phantom_abdomen", "split": "train", "num_cases": 4, "image_size": 32}
    >>> liver_only = PartialLabelSource(base, organs=("liver", "tumour"), known=("liver",),
    ...                                 class_map={0: 0, 1: 1, 2: 2, 3: 2, 4: 2})
    >>> example = liver_only[0]
    >>> example["known"].tolist(), int(example["label"].max()) <= 1
    ([True, False], True)

  Args:
    base: a labelled source or its dataset config.
    organs: the study's organ names, in label order (organ o is label o + 1).
    known: the organs this sub-dataset annotates (a subset of `organs`; may be empty).
    class_map: base label value → organ number in 0 … O (default: the identity on 0 … O).
    indices: the base examples in this sub-dataset (default: all).
    title: the sub-dataset's name in messages (`name` is the source registry's key).

  Raises:
    ValueError: an unknown organ in `known`, a map target outside 0 … O, duplicate organs, or no
      examples.
  """

  def __init__(
    self,
    base,
    organs: Sequence[str],
    known: Sequence[str],
    class_map: Mapping[int, int] | None = None,
    indices: Sequence[int] | None = None,
    title: str = "sub-dataset",
  ):
    self.base = as_source(base)
    self.organs = tuple(organs)
    self.name = title
    if len(set(self.organs)) != len(self.organs) or not self.organs:
      raise ValueError(f"organs must be distinct names, got {self.organs}.")
    unknown = sorted(set(known) - set(self.organs))
    if unknown:
      raise ValueError(
        f"{title}: known organ(s) {unknown} are not in the class map's organs {self.organs}."
      )
    self.known = np.asarray([o in set(known) for o in self.organs], bool)
    num = len(self.organs)
    mapping = {v: v for v in range(num + 1)} if class_map is None else dict(class_map)
    bad = {k: v for k, v in mapping.items() if not 0 <= int(v) <= num or int(k) < 0}
    if bad:
      raise ValueError(f"{title}: class_map entries {bad} must map values ≥ 0 to 0 … {num}.")
    size = max(int(k) for k in mapping) + 1
    self.table = np.full(size, -1, np.int64)
    for value, organ in mapping.items():
      self.table[int(value)] = int(organ)
    # Organ numbers this sub-dataset keeps (the others become 0).
    keep = np.concatenate([[0], np.where(self.known, np.arange(1, num + 1), 0)])
    self.keep = keep.astype(np.int64)
    self.indices = np.arange(len(self.base)) if indices is None else np.asarray(indices, np.int64)
    if not len(self.indices):
      raise ValueError(f"{title}: no examples (indices is empty).")
    if self.indices.min() < 0 or self.indices.max() >= len(self.base):
      raise ValueError(f"{title}: indices must be in [0, {len(self.base)}).")
    if hasattr(self.base, "case_ids"):
      self.case_ids = [self.base.case_ids[i] for i in self.indices]

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index) -> dict[str, Any]:
    position = int(self.indices[int(index)])
    example = dict(self.base[position])
    label = np.asarray(example["label"])
    if label.size and (label.min() < 0 or label.max() >= len(self.table)):
      raise DataError(
        f"{self.name}: example {position} has label values up to {label.max()}, which the "
        f"class map does not name (it covers 0 … {len(self.table) - 1})."
      )
    organ = self.table[label]
    if np.any(organ < 0):
      missing = sorted(set(np.unique(label[organ < 0]).tolist()))
      raise DataError(
        f"{self.name}: example {position} has label value(s) {missing} that the "
        "class map does not name."
      )
    example["label"] = self.keep[organ].astype(label.dtype)
    example["known"] = self.known.copy()
    return example

  def check_labels(self) -> None:
    """Reads every example once: a label value the class map does not name is a `DataError`
    now, before training, rather than when the example is first drawn."""
    for index in range(len(self)):
      self[index]

  def __repr__(self) -> str:
    known = [o for o, k in zip(self.organs, self.known, strict=True) if k]
    return f"PartialLabelSource({self.name!r}, known={known}, {len(self)} examples)"


# Keys of the sub-datasets whose label maps this process has read: a method is built again for
# every checkpoint evaluation, and a real dataset's labels need reading only once.
_LABELS_READ: set[str] = set()


def check_sub_datasets(
  sub_datasets: Sequence[PartialLabelSource],
  read_labels: bool = False,
  keys: Sequence[str] | None = None,
) -> None:
  """Before training: one organ list for all, no empty one; warn about never-annotated organs;
  with `read_labels`, every label map read once (`PartialLabelSource.check_labels`) — once per
  process for each of `keys` (e.g. the sub-datasets' config sections as JSON) when given.

  Raises:
    ValueError: no sub-datasets, or sub-datasets with different organ lists.
    DataError: (with `read_labels`) a label value a class map does not name.
  """
  if not sub_datasets:
    raise ValueError("No partially labelled sub-datasets given.")
  organs = sub_datasets[0].organs
  for sub in sub_datasets:
    if sub.organs != organs:
      raise ValueError(f"{sub.name} has organs {sub.organs}, {sub_datasets[0].name} {organs}.")
    if not len(sub):
      raise ValueError(f"{sub.name} has no examples.")
  annotated = np.any([sub.known for sub in sub_datasets], axis=0)
  if not annotated.all():
    never = [o for o, a in zip(organs, annotated, strict=True) if not a]
    warnings.warn(
      f"No sub-dataset annotates {never}: the model never sees a positive label for them.",
      stacklevel=2,
    )
  if read_labels:
    keys = [None] * len(sub_datasets) if keys is None else list(keys)
    for sub, key in zip(sub_datasets, keys, strict=True):
      if key is None or key not in _LABELS_READ:
        sub.check_labels()
        if key is not None:
          _LABELS_READ.add(key)
