r"""Train and evaluate any method.

  python -m launch.train --config=configs/scunet.py:smoke --workdir=runs/scunet_smoke \
      --config.optimizer.learning_rate=1e-4

Re-running the same command with the same workdir resumes from the newest checkpoint.
Multi-host (SLURM, TPU pods): run the same command on every host; `jax.distributed` starts
from the cluster environment (or pass --multihost). Installed, `mlsup-train` is the same command.
"""

from absl import app

from mlsup_jax import cli

cli.use_config_flag()
main = cli.train_main

if __name__ == "__main__":
  app.run(main)
