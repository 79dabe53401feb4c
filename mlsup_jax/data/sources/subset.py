"""A fixed subset of another source, by example indices (MedShift's cleaned external sets).

`IndexSubsetSource(base, indices_file=…)` reads example `indices[i]` of `base` as its example i.
The indices come from a `.npy` file (so a run's `config.json` stays small and the workdir records
which examples each level kept) or from an inline sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlsup_jax.data.sources import as_source


class IndexSubsetSource:
  """Examples `indices` of `base`, in that order.

  Args:
    base: a dataset config (dict / ConfigDict with `name`, built with `build_source`) or a
      random-access source.
    indices: the example indices of `base` (exclusive with `indices_file`).
    indices_file: a `.npy` file holding `[N]` integer indices.

  Attributes:
    indices: `[N]` int64. class_ids (and any other per-example array attribute of the base
    named in `PER_EXAMPLE`): the base's, restricted to `indices`.

  Raises:
    ValueError: when neither or both of `indices` / `indices_file` are given, the subset is
      empty, or an index is out of range.
  """

  PER_EXAMPLE = ("class_ids", "true_class_ids", "shift_types", "shifted")

  def __init__(self, base, indices: Sequence[int] | None = None, indices_file: str | None = None):
    if (indices is None) == (indices_file is None):
      raise ValueError("Give exactly one of indices and indices_file.")
    base = as_source(base)
    self.base = base
    values = np.load(indices_file) if indices_file is not None else np.asarray(indices)
    self.indices = np.asarray(values, np.int64).reshape(-1)
    where = indices_file or "indices"
    if not len(self.indices):
      raise ValueError(f"{where}: the subset is empty.")
    if self.indices.min() < 0 or self.indices.max() >= len(base):
      raise ValueError(
        f"{where}: indices span [{self.indices.min()}, {self.indices.max()}] but the base has "
        f"{len(base)} examples."
      )
    for name in self.PER_EXAMPLE:
      values = getattr(base, name, None)
      if values is not None:
        setattr(self, name, np.asarray(values)[self.indices])
    for name in ("class_names", "CLASS_NAMES"):
      if hasattr(base, name):
        setattr(self, name, getattr(base, name))

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index) -> dict[str, Any]:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"IndexSubsetSource index {index} out of range [0, {len(self)}).")
    return self.base[int(self.indices[index])]
