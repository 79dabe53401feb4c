r"""MedShift end to end: per-class detectors → external groups → levels → classifiers + OTDD.

  python -m launch.medshift --config=configs/medshift.py --workdir=runs/medshift
  python -m launch.medshift --config=configs/medshift.py:small,detector=autoencoder \
      --workdir=runs/medshift_small_ae --compilation_cache=/tmp/jax_cache

Writes `matrix.json`, `matrix.md` and `medshift.png` in the workdir (see
`mlsup_jax/pipelines/medshift.py`); re-running the same command resumes (trained detectors,
classifiers, scores and OTDD values are reused). Progress goes to the absl log (stderr).
"""

from absl import app, logging

from launch import common
from mlsup_jax.pipelines.medshift import run_medshift

_CONFIG = common.define_config_flag()


def main(argv):
  del argv
  common.start()
  logging.set_verbosity(logging.INFO)
  result = run_medshift(common.config_value(_CONFIG), common.WORKDIR.value)
  print(result["markdown"])
  print(f"\nWritten to {common.WORKDIR.value}/matrix.md, matrix.json and medshift.png.")


if __name__ == "__main__":
  app.run(main)
