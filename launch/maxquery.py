r"""The MaxQuery study: U-Net, MaxQuery w/o QD and MaxQuery on the abdominal phantom.

  python -m launch.maxquery --workdir=runs/maxquery                 # reduced (CPU, ≲ 15 min)
  python -m launch.maxquery --workdir=runs/maxquery_full --options=full
  python -m launch.maxquery --workdir=runs/mq_smoke --options=smoke --variants=maxquery

Trains and evaluates each variant of `configs/maxquery.py` in `<workdir>/<variant>`, prints the
paper-shaped tables and writes `<workdir>/results.md`, `results.json`, `ood_roc.png` and each
variant's case figures. Re-running resumes (finished variants are only re-evaluated).
"""

from absl import app, flags

from configs import maxquery as maxquery_config
from launch import common
from mlsup_jax.pipelines import maxquery_study

_OPTIONS = flags.DEFINE_string(
  "options", "", "Options for configs/maxquery.py besides the variant (e.g. 'full' or '3d')."
)
_VARIANTS = flags.DEFINE_list("variants", ["unet", "noqd", "maxquery"], "Variants to run.")


def main(argv):
  del argv
  common.start()
  configs = {
    variant: maxquery_config.get_config(
      ",".join(filter(None, [f"variant={variant}", _OPTIONS.value]))
    )
    for variant in _VARIANTS.value
  }
  study = maxquery_study.run_study(configs, common.WORKDIR.value)
  print(study["markdown"])
  print(f"\nWritten to {common.WORKDIR.value}/results.md, results.json and ood_roc.png.")


if __name__ == "__main__":
  app.run(main)
