r"""Evaluate the newest (or a given) checkpoint of a workdir, without training.

  python -m launch.evaluate --config=configs/scunet.py:smoke --workdir=runs/scunet_smoke
  python -m launch.evaluate ... --step=16 --output_dir=runs/scunet_smoke/eval_16

Installed, `mlsup-evaluate` is the same command.
"""

from absl import app

from mlsup_jax import cli

cli.use_config_flag()
main = cli.evaluate_main

if __name__ == "__main__":
  app.run(main)
