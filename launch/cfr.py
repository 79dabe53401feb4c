r"""ERM, DFR and CFR on a frozen encoder, on the spurious-marker radiograph phantom.

  python -m launch.cfr --config=configs/cfr.py --workdir=runs/cfr
  python -m launch.cfr --config=configs/cfr.py --workdir=runs/cfr --seeds=3
  python -m launch.cfr --config=configs/cfr.py:smoke --workdir=/tmp/cfr_smoke

Writes `results.json`, `results.md` and `groups.png` in the workdir
(`mlsup_jax/pipelines/spurious_study.py`); re-running reuses the pre-trained encoder and the
cached embeddings. `--seeds=N` runs seeds 0 … N−1 in `<workdir>/seed_<s>` and writes mean ± std
and the claims per seed to `<workdir>/results.md` / `results.json`.
"""

from absl import app, flags, logging

from launch import common
from mlsup_jax.pipelines import seed_grid, spurious_study

_CONFIG = common.define_config_flag()
_SEEDS = flags.DEFINE_integer("seeds", 0, "Run seeds 0 … N−1 and report over them (0: one run).")


def main(argv):
  del argv
  common.start()
  logging.set_verbosity(logging.INFO)
  config, workdir = common.config_value(_CONFIG), common.WORKDIR.value
  if not _SEEDS.value:
    result = spurious_study.run_spurious_study(config, workdir)
    print(result["markdown"])
    print(f"Written to {workdir}/results.md, results.json and groups.png.")
    return
  seeds = list(range(_SEEDS.value))
  per_seed = [
    spurious_study.run_spurious_study(spurious_study.seeded(config, seed), f"{workdir}/seed_{seed}")
    for seed in seeds
  ]
  summary = spurious_study.aggregate_seeds(per_seed)
  markdown = spurious_study.render_seeds_markdown(summary, seeds)
  seed_grid.write_study(workdir, markdown, {"seeds": seeds, **summary})
  print(markdown)
  print(f"Written to {workdir}/results.md and results.json (each seed in seed_<s>/).")


if __name__ == "__main__":
  app.run(main)
