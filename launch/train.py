r"""Train and evaluate any method.

  python -m launch.train --config=configs/scunet.py:smoke --workdir=runs/scunet_smoke \
      --config.optimizer.learning_rate=1e-4

Re-running the same command with the same workdir resumes from the newest checkpoint.
Multi-host (SLURM, TPU pods): run the same command on every host; `jax.distributed` starts
from the cluster environment (or pass --multihost).
"""

import json

from absl import app

from launch import common
from mlsup_jax.core import trainer

_CONFIG = common.define_config_flag()


def main(argv):
  del argv
  common.start()
  results = trainer.train_and_evaluate(common.config_value(_CONFIG), common.WORKDIR.value)
  print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
  app.run(main)
