"""Command-line entry points: flags, config loading, the `mlsup-train` / `mlsup-evaluate` scripts.

The launch scripts of a clone (`python -m launch.train …`) and the console scripts of an
installed package (`mlsup-train …`) share this module, so both parse and resolve a config the
same way:

* `--config=PATH[:options]` loads `get_config(options)` from a config file; `--config.a.b=v`
  overrides a field. Config files lock themselves except their source sections, so a misspelt
  field is an error, and a source can be swapped (`config_resolution.py`).
* `--workdir` holds the run; `--multihost` forces `jax.distributed.initialize()`;
  `--compilation_cache` (or `MLSUP_JAX_COMPILATION_CACHE`) keeps compiled steps across runs.

A config file imports its helpers (`configs.sections`) from its project, so the console scripts
put the directory above the config file's package on `sys.path` first: `mlsup-train
--config=/path/to/clone/configs/scunet.py:smoke --workdir=runs/x` works from any directory.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from absl import app, flags
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
STEP = flags.DEFINE_integer("step", None, "mlsup-evaluate: checkpoint step (default: newest).")
OUTPUT_DIR = flags.DEFINE_string(
  "output_dir", None, "mlsup-evaluate: where reports go (default: the workdir)."
)


def _config_flag_options(argv: Sequence[str] | None = None) -> dict:
  return {
    "lock_config": False,
    "accept_new_attributes": True,
    **({} if argv is None else {"sys_argv": list(argv)}),
  }


def define_config_flag(name: str = "config"):
  """`--config=configs/<method>.py[:options]` (+ `--config.a.b=value` overrides), required."""
  flag = config_flags.DEFINE_config_file(
    name, None, "Method config file.", **_config_flag_options()
  )
  flags.mark_flags_as_required([name])
  return flag


def config_value(flag):
  """The config of `flag` with its command-line overrides resolved, locked."""
  overrides = config_flags.get_override_values(flags.FLAGS[flag.name])
  return resolve_config(flag.value, overrides)


def load_config(args: Sequence[str], name: str = "config"):
  """The resolved config a launch script gets from `args` (its command-line arguments).

  The same parser, options and resolution as `define_config_flag` + `config_value`, on a
  private flag registry, so a notebook or a test sees exactly what a command line gives.

  Example:
    >>> from mlsup_jax.cli import load_config
    >>> config = load_config(["--config=configs/scunet.py:smoke",
    ...                       "--config.optimizer.learning_rate=1e-4"])
    >>> config.optimizer.learning_rate
    0.0001
  """
  argv = ["mlsup", *args]
  flag_values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file(
    name, None, "Method config file.", flag_values=flag_values, **_config_flag_options(argv)
  )
  flag_values(argv)
  overrides = config_flags.get_override_values(flag_values[name])
  return resolve_config(holder.value, overrides)


def start() -> None:
  """Multi-host initialisation (when the cluster asks for it) and the compilation cache."""
  mesh.maybe_initialize_distributed(force=MULTIHOST.value)
  compilation_cache.enable_compilation_cache(CACHE.value)


def config_project_root(argv: Sequence[str], name: str = "config") -> Path | None:
  """The directory above the package that holds `--config`'s file (None if there is no flag).

  For `/clone/configs/scunet.py` (`configs/` has an `__init__.py`, `/clone` has none) this is
  `/clone`, from where the file's `from configs.sections import …` resolves.
  """
  for arg in argv:
    if arg.startswith(f"--{name}="):
      path = Path(arg.split("=", 1)[1].split(":", 1)[0]).expanduser().resolve()
      directory = path.parent
      while (directory / "__init__.py").exists() and directory.parent != directory:
        directory = directory.parent
      return directory
  return None


# The `--config` flag of the running entry point (`use_config_flag`).
_ENTRY_CONFIG = {}


def use_config_flag():
  """Defines `--config` for `train_main` / `evaluate_main` (once per process) and returns it."""
  if "config" not in _ENTRY_CONFIG:
    _ENTRY_CONFIG["config"] = define_config_flag()
  return _ENTRY_CONFIG["config"]


def train_main(argv) -> None:
  """Trains and evaluates `--config` in `--workdir` (resuming), and prints the results."""
  del argv
  from mlsup_jax.core import trainer  # Imported here: flags parse before JAX starts.

  start()
  results = trainer.train_and_evaluate(config_value(_ENTRY_CONFIG["config"]), WORKDIR.value)
  print(json.dumps(results, indent=2, sort_keys=True))


def evaluate_main(argv) -> None:
  """Evaluates checkpoint `--step` (default: newest) of `--workdir` and prints the results."""
  del argv
  from mlsup_jax.core import evaluation

  start()
  results = evaluation.evaluate_checkpoint(
    config_value(_ENTRY_CONFIG["config"]),
    WORKDIR.value,
    step=STEP.value,
    output_dir=OUTPUT_DIR.value,
  )
  print(json.dumps(results, indent=2, sort_keys=True))


def entry_point(main) -> None:
  """Runs `main` as a command: the config file's project on `sys.path`, flags, `app.run`."""
  root = config_project_root(sys.argv)
  if root is not None and str(root) not in sys.path:
    sys.path.insert(0, str(root))
  use_config_flag()
  app.run(main)


def train() -> None:
  """`mlsup-train --config=PATH[:options] --workdir=DIR [--config.a.b=v …]`."""
  entry_point(train_main)


def evaluate() -> None:
  """`mlsup-evaluate --config=PATH[:options] --workdir=DIR [--step=N] [--output_dir=DIR]`."""
  entry_point(evaluate_main)
