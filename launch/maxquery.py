r"""The MaxQuery study: U-Net, MaxQuery w/o QD and MaxQuery on the abdominal phantom.

  python -m launch.maxquery --workdir=runs/maxquery                 # reduced (CPU, ≲ 15 min)
  python -m launch.maxquery --workdir=runs/maxquery_full --options=full
  python -m launch.maxquery --workdir=runs/mq_smoke --options=smoke --variants=maxquery
  python -m launch.maxquery --workdir=runs/maxquery_seeds --seeds=3   # mean ± std over 3 seeds

Trains and evaluates each variant of `configs/maxquery.py` in `<workdir>/<variant>`, prints the
paper-shaped tables and writes `<workdir>/results.md`, `results.json`, `ood_roc.png` and each
variant's case figures. Re-running resumes (finished variants are only re-evaluated).
With `--seeds=N` the study runs once per seed in `<workdir>/seed_<s>` (training seed and data
order 0 … N−1) and the tables report mean ± std with each seed's value, and on how many seeds
each of the paper's orderings holds.
"""

from absl import app, flags

from configs import maxquery as maxquery_config
from launch import common
from mlsup_jax.pipelines import maxquery_study

_OPTIONS = flags.DEFINE_string(
  "options", "", "Options for configs/maxquery.py besides the variant (e.g. 'full' or '3d')."
)
_VARIANTS = flags.DEFINE_list("variants", ["unet", "noqd", "maxquery"], "Variants to run.")
_SEEDS = flags.DEFINE_integer("seeds", 1, "Number of seeds (> 1: tables as mean ± std).")


def main(argv):
  del argv
  common.start()
  configs = {
    variant: maxquery_config.get_config(
      ",".join(filter(None, [f"variant={variant}", _OPTIONS.value]))
    )
    for variant in _VARIANTS.value
  }
  if _SEEDS.value < 1:
    raise app.UsageError(f"--seeds must be ≥ 1, got {_SEEDS.value}.")
  if _SEEDS.value == 1:
    study = maxquery_study.run_study(configs, common.WORKDIR.value)
  else:
    study = maxquery_study.run_seeds(configs, common.WORKDIR.value, range(_SEEDS.value))
  print(study["markdown"])
  print(f"\nWritten to {common.WORKDIR.value}/results.md, results.json and ood_roc.png.")


if __name__ == "__main__":
  app.run(main)
