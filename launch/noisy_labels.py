r"""The noisy-label study: U-Net, MW-Net, MCPM, plain, PNT, INT, PINT over noise ratios and seeds.

  python -m launch.noisy_labels --workdir=runs/noisy_labels                    # 5 r × 3 seeds
  python -m launch.noisy_labels --workdir=runs/nl --ratios=0.4 --seeds=1 --methods=U-Net,MCPM

Every run is `python -m launch.train --config=configs/{mcpm,pint}.py:small,variant=…,ratio=r
--config.seed=s` in `<workdir>/<method>/r<r>/seed<s>`; the tables (mean ± std over the seeds,
each seed's Dice, and how many seeds each ordering holds on) go to `<workdir>/results.md`.
Re-running resumes. `--options` replaces `small` (e.g. `small,steps=3000`).
"""

from absl import app, flags

from configs import mcpm, pint
from launch import common
from mlsup_jax.pipelines import noisy_label_study

# Row name → (config module, variant), in table order.
METHODS = {
  "U-Net": (mcpm, "unet"),
  "MW-Net": (mcpm, "mwnet"),
  "MCPM": (mcpm, "mcpm"),
  "plain": (pint, "none"),
  "PNT": (pint, "pnt"),
  "INT": (pint, "int"),
  "PINT": (pint, "pint"),
}

_RATIOS = flags.DEFINE_list("ratios", ["0", "0.2", "0.4", "0.6", "0.8"], "Noise ratios r.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Training seeds 0 … N−1.")
_METHODS = flags.DEFINE_list("methods", list(METHODS), "Rows to run.")
_OPTIONS = flags.DEFINE_string("options", "small", "Config options besides variant and ratio.")


def main(argv):
  del argv
  common.start()
  unknown = sorted(set(_METHODS.value) - set(METHODS))
  if unknown:
    raise app.UsageError(f"Unknown --methods {unknown}; expected some of {list(METHODS)}.")

  def make_config(method, ratio):
    module, variant = METHODS[method]
    return module.get_config(f"{_OPTIONS.value},variant={variant},ratio={ratio}")

  study = noisy_label_study.run_grid(
    make_config,
    common.WORKDIR.value,
    _METHODS.value,
    [float(r) for r in _RATIOS.value],
    range(_SEEDS.value),
  )
  print(study["markdown"])


if __name__ == "__main__":
  app.run(main)
