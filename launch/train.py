r"""Train and evaluate any method.

  python -m launch.train --config=configs/scunet.py:smoke --workdir=runs/scunet_smoke \
      --config.optimizer.learning_rate=1e-4

Re-running the same command with the same workdir resumes from the newest checkpoint.
Multi-host (SLURM, TPU pods): run the same command on every host; `jax.distributed` starts
from the cluster environment (or pass --multihost).
"""

import json
import os

from absl import app, flags
from ml_collections import config_flags

from mlsup_jax.core import compilation_cache, mesh, trainer

_CONFIG = config_flags.DEFINE_config_file("config", None, "Method config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
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
  results = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
  app.run(main)
