"""`Registry`: an explicit name → object table, imported lazily.

Tables map a config name to `"module.path:attribute"` strings that are imported on first use, so
importing the library does not import every method (and its optional dependencies). There is no
decorator magic: to add an entry, add one line to the table. The tables live next to what they
name:

| table        | where                                 | names                                   |
|--------------|---------------------------------------|-----------------------------------------|
| `METHODS`    | `mlsup_jax/methods/__init__.py`       | `config.method`                         |
| `MODELS`     | `mlsup_jax/nn/__init__.py`            | `config.model.name`                     |
| `LOSSES`     | `mlsup_jax/losses/__init__.py`        | the terms of `config.loss`              |
| `DATASETS`   | `mlsup_jax/data/sources/__init__.py`  | `config.data.*_source.name`, streams    |
| `TRANSFORMS` | `mlsup_jax/data/augmentation/transforms.py` | `config.data.*_transforms`, views |
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


class Registry:
  """A named, explicit, lazily-importing table.

  Args:
    kind: what the table holds ("method", "loss", …), used in error messages.
    table: name → `"module:attribute"` (imported lazily) or the object itself.
  """

  def __init__(self, kind: str, table: Mapping[str, Any]):
    self.kind = kind
    self._table = dict(table)

  def names(self) -> list[str]:
    return sorted(self._table)

  def __contains__(self, name: str) -> bool:
    return name in self._table

  def register(self, name: str, entry: Any, *, replace: bool = False) -> None:
    """Adds an entry at run time (tests, notebooks); the tables below stay the reference."""
    if name in self._table and not replace:
      raise KeyError(f"{self.kind} {name!r} is already registered; pass replace=True.")
    self._table[name] = entry

  def unregister(self, name: str) -> None:
    self._table.pop(name, None)

  def get(self, name: str) -> Any:
    if name not in self._table:
      raise KeyError(
        f"Unknown {self.kind} {name!r}. Known {self.kind}s: {', '.join(self.names())}."
      )
    entry = self._table[name]
    if isinstance(entry, str):
      module_name, _, attribute = entry.partition(":")
      entry = getattr(importlib.import_module(module_name), attribute)
      self._table[name] = entry
    return entry
