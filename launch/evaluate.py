r"""Evaluate the newest checkpoint of a workdir (no training).

python -m launch.evaluate --config=configs/scunet.py:smoke --workdir=runs/scunet_smoke
"""

import json
import os

from absl import app, flags
from ml_collections import config_flags

from mlsup_jax.core import compilation_cache, evaluation, mesh

_CONFIG = config_flags.DEFINE_config_file("config", None, "Method config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir holding the checkpoints.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: newest).")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Force jax.distributed.initialize().")
_CACHE = flags.DEFINE_string(
  "compilation_cache",
  os.environ.get("MLSUP_JAX_COMPILATION_CACHE", ""),
  "Persistent XLA compilation cache directory (empty: off).",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  mesh.maybe_initialize_distributed(force=_MULTIHOST.value)
  compilation_cache.enable_compilation_cache(_CACHE.value)
  results = evaluation.evaluate_checkpoint(_CONFIG.value, _WORKDIR.value, step=_STEP.value)
  print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
  app.run(main)
