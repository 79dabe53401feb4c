r"""Evaluate the newest (or a given) checkpoint of a workdir, without training.

python -m launch.evaluate --config=configs/scunet.py:smoke --workdir=runs/scunet_smoke
"""

import json

from absl import app, flags

from launch import common
from mlsup_jax.core import evaluation

_CONFIG = common.define_config_flag()
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: newest).")


def main(argv):
  del argv
  common.start()
  results = evaluation.evaluate_checkpoint(
    common.config_value(_CONFIG), common.WORKDIR.value, step=_STEP.value
  )
  print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
  app.run(main)
