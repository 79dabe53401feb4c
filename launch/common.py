"""Flags and start-up shared by every launch script (defined once, in `mlsup_jax/cli.py`)."""

from mlsup_jax.cli import (
  CACHE,
  MULTIHOST,
  WORKDIR,
  config_value,
  define_config_flag,
  load_config,
  start,
)

__all__ = [
  "CACHE",
  "MULTIHOST",
  "WORKDIR",
  "config_value",
  "define_config_flag",
  "load_config",
  "start",
]
