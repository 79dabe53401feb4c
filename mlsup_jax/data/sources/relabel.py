"""Relabelling of a segmentation source by a class lookup table (e.g. multi-organ → binary).

`RelabelSource(base, mapping=(0, 1, 1, 1, 1))` returns the base's examples with every label
value v replaced by `mapping[v]`: merging the liver and its tumours of the abdominal phantom into
one foreground class gives the single-structure binary task of the noisy-label papers (LIDC
nodules for MCPM, the left atrium for PINT); `(0, 0, 1, 1, 1)` keeps the lesions only. Put it
*under* a label-noise wrapper (`noisy_labels` with `base = relabel(...)`) so the corruption acts on
the relabelled masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlsup_jax.data.sources import as_source
from mlsup_jax.data.validation import DataError


class RelabelSource:
  """The examples of `base` with `label` (and any other key in `keys`) mapped by `mapping`.

  Args:
    base: a labelled source or its dataset config (see `data/source_spec.py`).
    mapping: `mapping[v]` is the new label of value v; values must be ≥ 0. Its length is the
      number of base label values accepted.
    keys: the example keys to relabel (those absent from an example are skipped).

  Raises:
    ValueError: an empty mapping or a negative new label.
    DataError (when reading): a label value with no entry in `mapping`.
  """

  def __init__(self, base, mapping: Sequence[int], keys: Sequence[str] = ("label",)):
    table = np.asarray(tuple(mapping), np.int64)
    if table.ndim != 1 or not len(table):
      raise ValueError(f"mapping must be a non-empty sequence of labels, got {mapping!r}.")
    if table.min() < 0:
      raise ValueError(f"mapping must hold labels ≥ 0, got {tuple(table.tolist())}.")
    self.base = as_source(base)
    self.table = table
    self.keys = tuple(keys)
    self.num_classes = int(table.max()) + 1
    for name in ("case_ids", "class_ids"):
      if hasattr(self.base, name):
        setattr(self, name, getattr(self.base, name))

  def __len__(self) -> int:
    return len(self.base)

  def __getitem__(self, index) -> dict[str, Any]:
    example = dict(self.base[index])
    for key in self.keys:
      if key not in example:
        continue
      label = np.asarray(example[key])
      if label.size and (label.min() < 0 or label.max() >= len(self.table)):
        raise DataError(
          f"relabel: example {index} has {key} values in [{label.min()}, {label.max()}], but "
          f"the mapping covers 0..{len(self.table) - 1}."
        )
      example[key] = self.table[label].astype(label.dtype)
    return example

  def __repr__(self) -> str:
    return f"RelabelSource({self.base!r}, mapping={tuple(self.table.tolist())})"
