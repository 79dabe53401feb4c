"""Flags and start-up shared by every launch script."""

import os

from absl import flags
from ml_collections import config_flags

from mlsup_jax.core import compilation_cache, mesh

WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
MULTIHOST = flags.DEFINE_bool("multihost", False, "Force jax.distributed.initialize().")
CACHE = flags.DEFINE_string(
  "compilation_cache",
  os.environ.get("MLSUP_JAX_COMPILATION_CACHE", ""),
  "Persistent XLA compilation cache directory (empty: off).",
)
flags.mark_flags_as_required(["workdir"])


def define_config_flag():
  """`--config=configs/<method>.py[:options]` (+ `--config.a.b=value` overrides), required."""
  flag = config_flags.DEFINE_config_file("config", None, "Method config file.", lock_config=True)
  flags.mark_flags_as_required(["config"])
  return flag


def start() -> None:
  """Multi-host initialisation (when the cluster asks for it) and the compilation cache."""
  mesh.maybe_initialize_distributed(force=MULTIHOST.value)
  compilation_cache.enable_compilation_cache(CACHE.value)
