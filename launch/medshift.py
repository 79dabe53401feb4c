r"""MedShift end to end: per-class detectors → external groups → levels → classifiers + OTDD.

  python -m launch.medshift --config=configs/medshift.py --workdir=runs/medshift
  python -m launch.medshift --config=configs/medshift.py:small,detector=autoencoder \
      --workdir=runs/medshift_small_ae --compilation_cache=/tmp/jax_cache

Writes `matrix.json`, `matrix.md` and `medshift.png` in the workdir (see
`mlsup_jax/pipelines/medshift.py`); re-running the same command resumes (trained detectors,
classifiers, scores and OTDD values are reused). Progress goes to the absl log (stderr).

`--seeds=N` runs seeds 0 … N−1 (`config.seed`: the detectors' and classifiers' initialisation
and training order; the phantoms stay fixed) in `<workdir>/seed_<s>` and writes the matrix as
mean ± std over the seeds, with the claims that hold on each, to `<workdir>/results.md` /
`results.json`.
"""

import copy
import os

from absl import app, flags, logging

from launch import common
from mlsup_jax.pipelines import medshift_report, seed_grid
from mlsup_jax.pipelines.medshift import run_medshift

_CONFIG = common.define_config_flag()
_SEEDS = flags.DEFINE_integer("seeds", 0, "Run seeds 0 … N−1 and report over them (0: one run).")


def main(argv):
  del argv
  common.start()
  logging.set_verbosity(logging.INFO)
  config, workdir = common.config_value(_CONFIG), common.WORKDIR.value
  if not _SEEDS.value:
    result = run_medshift(config, workdir)
    print(result["markdown"])
    print(f"\nWritten to {workdir}/matrix.md, matrix.json and medshift.png.")
    return
  seeds = list(range(_SEEDS.value))
  per_seed = []
  for seed in seeds:
    seeded = copy.deepcopy(config)
    with seeded.unlocked():
      seeded.seed = seed
    per_seed.append(run_medshift(seeded, os.path.join(workdir, f"seed_{seed}")))
  summary = medshift_report.aggregate_seeds(per_seed)
  markdown = medshift_report.render_seeds_markdown(summary, seeds)
  seed_grid.write_study(workdir, markdown, {"seeds": seeds, **summary})
  print(markdown)
  print(f"\nWritten to {workdir}/results.md and results.json (each seed in seed_<s>/).")


if __name__ == "__main__":
  app.run(main)
