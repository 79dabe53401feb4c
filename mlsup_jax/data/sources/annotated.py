"""Per-example annotations from a file, added to another source's examples (OSCARS's pseudo labels).

`AnnotatedSource(base, arrays_file=…)` returns example i of `base` with `arrays[key][i]` added for
every array of the `.npz` (e.g. `bin`, the pseudo intra-class label from the anomaly-score
groups; `anomaly`, the squashed detector score; `query`, the retrieval query flag). Every array
must have one entry per example of the base.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlsup_jax.data.sources import as_source


class AnnotatedSource:
  """The examples of `base` plus the per-example values of `arrays_file` (module docstring).

  Example:
    >>> import numpy as np, os, tempfile
    >>> from mlsup_jax.data.sources import build_source
    >>> path = os.path.join(tempfile.mkdtemp(), "bins.npz")
    >>> np.savez(path, bin=np.array([2, 0, 1]))
    >>> source = build_source({"name": "annotated", "arrays_file": path,
    ...   "base": {"name": "phantom_radiograph", "num_cases": 3, "image_size": 32}})
    >>> [int(source[i]["bin"]) for i in range(3)]
    [2, 0, 1]

  Args:
    base: a source or its config.
    arrays_file: an `.npz` of `[N, ...]` arrays (N = the base's length).
    keys: the arrays to add (default: all of them).

  Raises:
    ValueError: a missing file or key, an array of the wrong length, or a key the base's
      examples already have.
  """

  PER_EXAMPLE = ("class_ids", "true_class_ids", "shift_types", "shifted")

  def __init__(self, base, arrays_file: str, keys: Sequence[str] | None = None):
    self.base = as_source(base)
    try:
      with np.load(arrays_file) as f:
        names = list(f.files) if keys is None else list(keys)
        missing = sorted(set(names) - set(f.files))
        if missing:
          raise ValueError(f"{arrays_file} has no arrays {missing}; it has {sorted(f.files)}.")
        self.arrays = {name: np.asarray(f[name]) for name in names}
    except FileNotFoundError as error:
      raise ValueError(f"annotation file {arrays_file} does not exist.") from error
    for name, values in self.arrays.items():
      if len(values) != len(self.base):
        raise ValueError(
          f"{arrays_file}: {name!r} has {len(values)} entries for a source of {len(self.base)}."
        )
    clash = sorted(set(self.arrays) & set(self.base[0]))
    if clash:
      raise ValueError(f"the base's examples already have {clash}.")
    for name in self.PER_EXAMPLE:
      if hasattr(self.base, name):
        setattr(self, name, getattr(self.base, name))
    self.case_ids = getattr(self.base, "case_ids", [str(i) for i in range(len(self.base))])
    self.class_names = getattr(self.base, "class_names", None)

  def __len__(self) -> int:
    return len(self.base)

  def __getitem__(self, index: int) -> dict[str, Any]:
    example = self.base[index]
    index = int(index) % len(self)
    return {**example, **{name: values[index] for name, values in self.arrays.items()}}
