r"""The LTUDA study: the partial-label baselines, LTUDA's stages and its two mixings, over seeds.

  python -m launch.ltuda --workdir=runs/ltuda_study --seeds=3            # `small` size
  python -m launch.ltuda --workdir=runs/ltuda_study --options= --seeds=3  # the default size

Every row is `configs/ltuda.py:<options>,<row's options>` with `--config.seed=s`, trained in
`<workdir>/<row>/<options>/seed<s>` (re-running resumes); its checkpoint is chosen on the
validation cases (`pipelines/model_selection.py`) and tested once. `<workdir>/results.md` /
`results.json`: per-organ Dice, mean Dice and HD95 (mean ± std over seeds, each seed's value),
Table 9's intra- / inter-class feature variance, and on how many seeds each of the paper's
orderings holds.
"""

from absl import app, flags

from configs import ltuda as ltuda_config
from launch import common
from mlsup_jax.pipelines import model_selection, seed_grid

# Row name → config options, in table order.
METHODS = {
  "naive (unknown = background)": "method=naive",
  "marginal + exclusion (Shi et al.)": "method=marginal",
  "LTUDA stage 1: CDA (CutMix)": "method=ltuda_cda,mixing=cutmix",
  "LTUDA: CDA + PDA (CutMix)": "method=ltuda,mixing=cutmix",
  "LTUDA: CDA + PDA (CarveMix)": "method=ltuda,mixing=carvemix",
  "fully labelled (upper bound)": "method=full",
}
LTUDA = "LTUDA: CDA + PDA (CutMix)"
METRICS = (
  "dice",
  "dice/liver",
  "dice/kidneys",
  "dice/spleen",
  "dice/pancreas",
  "hd95",
  "num_missed",
  "intra_class_variance",
  "inter_class_variance",
)
LABELS = {
  "dice": "mean Dice",
  "dice/liver": "liver",
  "dice/kidneys": "kidneys",
  "dice/spleen": "spleen",
  "dice/pancreas": "pancreas",
  "hd95": "HD95 (mm)",
  "num_missed": "missed organs",
  "intra_class_variance": "intra-class var.",
  "inter_class_variance": "inter-class var.",
}
ORDERINGS = (
  ("LTUDA > naive", ((LTUDA, "naive (unknown = background)"),)),
  ("LTUDA > marginal + exclusion", ((LTUDA, "marginal + exclusion (Shi et al.)"),)),
  ("stage 2 > stage 1", ((LTUDA, "LTUDA stage 1: CDA (CutMix)"),)),
  ("CarveMix > CutMix", (("LTUDA: CDA + PDA (CarveMix)", LTUDA),)),
  ("fully labelled > LTUDA", (("fully labelled (upper bound)", LTUDA),)),
)
GRID = seed_grid.Grid("size", METRICS, ORDERINGS)

_SEEDS = flags.DEFINE_integer("seeds", 3, "Training seeds 0 … N−1.")
_METHODS = flags.DEFINE_list("methods", list(METHODS), "Rows to run (names without commas).")
_OPTIONS = flags.DEFINE_string("options", "small", "configs/ltuda.py options besides the row's.")


def main(argv):
  del argv
  common.start()
  unknown = sorted(set(_METHODS.value) - set(METHODS))
  if unknown:
    raise app.UsageError(f"Unknown --methods {unknown}; expected some of {list(METHODS)}.")

  def make_config(method, size):
    del size
    return ltuda_config.get_config(",".join(o for o in (_OPTIONS.value, METHODS[method]) if o))

  study = seed_grid.run_grid(
    GRID,
    make_config,
    common.WORKDIR.value,
    _METHODS.value,
    [_OPTIONS.value or "default"],
    range(_SEEDS.value),
    run=model_selection.train_and_select,
    labels=LABELS,
  )
  print(study["markdown"])


if __name__ == "__main__":
  app.run(main)
