"""One way for wrapper sources (noisy labels, OOD splits, subsets, relabelling) to take a base.

A wrapper's `base` is either a dataset config — a dict or `ConfigDict` with `name` (a
`core.registry.DATASETS` entry) and that factory's fields, built by `data.pipeline.build_source`
— or an already built random-access source (anything with `__len__` and `__getitem__`).
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections


def as_source(spec, what: str = "base"):
  """The source `spec` describes (see the module docstring).

  Args:
    spec: a dataset config or a random-access source.
    what: the argument's name, for error messages.

  Raises:
    ValueError: a config without `name`, or something that is neither a config nor a source.
  """
  if isinstance(spec, ml_collections.ConfigDict):
    spec = spec.to_dict()
  if isinstance(spec, Mapping):
    if "name" not in spec:
      raise ValueError(
        f"{what} config needs a 'name' (a DATASETS entry), got fields {sorted(spec)}."
      )
    from mlsup_jax.data.pipeline import build_source  # Deferred: pipeline imports grain and JAX.

    return build_source(ml_collections.ConfigDict(dict(spec)))
  if not (hasattr(spec, "__len__") and hasattr(spec, "__getitem__")):
    raise ValueError(
      f"{what} must be a dataset config (a dict with 'name') or a random-access source, got "
      f"{type(spec).__name__}."
    )
  return spec
