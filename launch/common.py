"""Flags and start-up shared by every launch script."""

import os
from collections.abc import Sequence

from absl import flags
from ml_collections import config_flags

from mlsup_jax.core import compilation_cache, mesh
from mlsup_jax.core.config_resolution import resolve_config

WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
MULTIHOST = flags.DEFINE_bool("multihost", False, "Force jax.distributed.initialize().")
CACHE = flags.DEFINE_string(
  "compilation_cache",
  os.environ.get("MLSUP_JAX_COMPILATION_CACHE", ""),
  "Persistent XLA compilation cache directory (empty: off).",
)
flags.mark_flags_as_required(["workdir"])


def define_config_flag(name: str = "config"):
  """`--config=configs/<method>.py[:options]` (+ `--config.a.b=value` overrides), required.

  The config file locks itself except its source sections (`configs/sections/common.finalize`),
  so an unknown field is an error everywhere but there; `config_value` then resolves the
  overrides (a source whose `name` changed is replaced as a whole; see
  `mlsup_jax/core/config_resolution.py`).
  """
  flag = config_flags.DEFINE_config_file(
    name, None, "Method config file.", lock_config=False, accept_new_attributes=True
  )
  flags.mark_flags_as_required([name])
  return flag


def load_config(args: Sequence[str], name: str = "config"):
  """The resolved config a launch script gets from `args` (its command-line arguments).

  The same parser, options and resolution as `define_config_flag` + `config_value`, on a
  private flag registry, so a notebook or a test can see exactly what a command line gives.

  Example:
    >>> from launch.common import load_config
    >>> config = load_config(["--config=configs/scunet.py:smoke",
    ...                       "--config.optimizer.learning_rate=1e-4"])
    >>> config.optimizer.learning_rate
    0.0001
  """
  argv = ["launch", *args]
  flag_values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file(
    name,
    None,
    "Method config file.",
    flag_values=flag_values,
    lock_config=False,
    accept_new_attributes=True,
    sys_argv=argv,
  )
  flag_values(argv)
  overrides = config_flags.get_override_values(flag_values[name])
  return resolve_config(holder.value, overrides)


def config_value(flag):
  """The config of `flag` with its command-line overrides resolved, locked."""
  overrides = config_flags.get_override_values(flags.FLAGS[flag.name])
  return resolve_config(flag.value, overrides)


def start() -> None:
  """Multi-host initialisation (when the cluster asks for it) and the compilation cache."""
  mesh.maybe_initialize_distributed(force=MULTIHOST.value)
  compilation_cache.enable_compilation_cache(CACHE.value)
