"""Configs after command-line overrides: named sections replaced, validated, completed, locked.

A method config (`configs/<method>.py`) is locked, except its **source sections** (every
`config.data.*_source`, `config.data.streams.<name>.source`, their nested `base` sections), its
`model` section (when it names a network) and stream `views`, which stay open for new fields so a
source or a network can be swapped on the command line.
`resolve_config` then makes one rule hold for every run:

* **Changing a source's `name` replaces the whole section.** The fields the config file gave the
  old source are dropped; the section becomes the new source's fields given on the command line
  plus that source's defaults. So
  `--config.data.train_source.name=nnunet_raw --config.data.train_source.root=DIR` works
  whatever fields the phantom had.
* **Changing `model.name` keeps the fields the new network also has** (`num_classes`, `dtype`,
  `dropout_rate` …) and drops the others (logged).
* Every source field must be an argument of its source and every model field one of its network
  (a typo is an error naming the accepted fields), and the source's defaults are filled in, so
  `config.json` records every value used.

The trainer resolves every config it runs (without overrides this only validates and fills in
defaults), so Python and command-line runs behave alike.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterable

import ml_collections
from absl import logging

from mlsup_jax.data.sources import DATASETS
from mlsup_jax.nn import MODELS, model_fields

_PLAIN = (int, float, str, bool, type(None))


def _is_source(value) -> bool:
  return (
    isinstance(value, ml_collections.ConfigDict)
    and "name" in value
    and isinstance(value.name, str)
    and value.name in DATASETS
  )


def source_sections(config: ml_collections.ConfigDict) -> list[str]:
  """Dotted paths (from the config root) of every source section, outermost first."""
  if "data" not in config or not isinstance(config.data, ml_collections.ConfigDict):
    return []
  roots = [f"data.{key}" for key in config.data.keys() if key.endswith("_source")]
  if "streams" in config.data:
    roots += [f"data.streams.{name}.source" for name in config.data.streams.keys()]
  paths = []
  while roots:
    path = roots.pop(0)
    section = _get(config, path)
    if not _is_source(section):
      continue
    paths.append(path)
    roots += [f"{path}.{key}" for key, value in section.items() if _is_source(value)]
  return paths


def _get(config, path: str):
  for key in path.split("."):
    config = config[key]
  return config


def _set(config, path: str, value) -> None:
  *parents, key = path.split(".")
  for parent in parents:
    config = config[parent]
  config[key] = value


def open_for_overrides(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Locks `config` except its source sections and stream views (module docstring)."""
  config.lock()
  for path in source_sections(config):
    _get(config, path).unlock()
  if "model" in config and "name" in config.model and config.model.name in MODELS:
    config.model.unlock()
  if "data" in config and "streams" in config.data:
    for name in config.data.streams.keys():
      if "views" in config.data.streams[name]:
        config.data.streams[name].views.unlock()
  return config


def _source_parameters(name: str) -> dict[str, inspect.Parameter] | None:
  """The constructor arguments of source `name` (None when it takes `**kwargs`)."""
  parameters = dict(inspect.signature(DATASETS.get(name)).parameters)
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
    return None
  return {k: p for k, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _plain(value) -> bool:
  if isinstance(value, tuple | list):
    return all(_plain(v) for v in value)
  return isinstance(value, _PLAIN)


def _overridden(path: str, overrides: set[str]) -> bool:
  return path in overrides or any(o.startswith(path + ".") for o in overrides)


def _resolve_source(config, path: str, overrides: set[str]) -> None:
  section = _get(config, path)
  name = section.name
  fields = dict(section.items())
  if f"{path}.name" in overrides:
    dropped = sorted(k for k in fields if k != "name" and not _overridden(f"{path}.{k}", overrides))
    if dropped:
      logging.info("config.%s: source %r replaces the section; dropped %s.", path, name, dropped)
    fields = {k: v for k, v in fields.items() if k not in dropped}
  parameters = _source_parameters(name)
  if parameters is not None:
    unknown = sorted(set(fields) - set(parameters) - {"name"})
    if unknown:
      raise ValueError(
        f"config.{path}: source {name!r} has no field(s) {unknown}; its fields: "
        f"{sorted(parameters)}."
      )
    missing = sorted(
      k for k, p in parameters.items() if k not in fields and p.default is inspect.Parameter.empty
    )
    if missing:
      raise ValueError(f"config.{path}: source {name!r} needs field(s) {missing}.")
    for key, parameter in parameters.items():
      if key not in fields and _plain(parameter.default):
        fields[key] = parameter.default
  _set(config, path, ml_collections.ConfigDict({k: fields[k] for k in sorted(fields)}))


def _resolve_model(config, overrides: set[str]) -> None:
  if "model" not in config or "name" not in config.model or config.model.name not in MODELS:
    return
  accepted = model_fields(config.model.name)
  fields = dict(config.model.items())
  if "model.name" in overrides:
    dropped = sorted(k for k in fields if k != "name" and k not in accepted)
    if dropped:
      logging.info("config.model: %r does not take %s; dropped.", config.model.name, dropped)
    fields = {k: v for k, v in fields.items() if k not in dropped}
  unknown = sorted(set(fields) - set(accepted) - {"name"})
  if unknown:
    raise ValueError(
      f"config.model: model {config.model.name!r} has no field(s) {unknown}; its fields: "
      f"{sorted(accepted)}."
    )
  config.model = ml_collections.ConfigDict(fields)


def resolve_config(
  config: ml_collections.ConfigDict, overrides: Iterable[str] = ()
) -> ml_collections.ConfigDict:
  """A resolved, fully locked copy of `config` (module docstring).

  Args:
    config: a method config, after any command-line overrides.
    overrides: the dotted paths the command line set (`config_flags.get_override_values`).

  Raises:
    ValueError: a source or model field that its class does not take, or a required one missing.

  Example:
    >>> from configs import segmentation
    >>> from mlsup_jax.core.config_resolution import resolve_config
    >>> config = segmentation.get_config("smoke")
    >>> config.data.train_source.name = "nnunet_raw"
    >>> config.data.train_source.root = "/data/Dataset001"
    >>> resolved = resolve_config(config, {"data.train_source.name", "data.train_source.root"})
    >>> dict(resolved.data.train_source)
    {'name': 'nnunet_raw', 'root': '/data/Dataset001', 'split': 'train'}
  """
  overrides = set(overrides)
  config = copy.deepcopy(config)
  config.unlock()
  for path in source_sections(config):
    try:
      section = _get(config, path)
    except KeyError:  # Inside an outer section that was replaced.
      continue
    if _is_source(section):
      _resolve_source(config, path, overrides)
  _resolve_model(config, overrides)
  config.lock()
  return config
