r"""The semi-supervised study: every method × labelled patients × training seeds on the cardiac
phantom, each run's checkpoint chosen on the validation patients and then tested once.

  python -m launch.semi_supervised --workdir=runs/ssl   # 1 / 3 / 7 labelled × 3 seeds
  python -m launch.semi_supervised --workdir=runs/ssl --labelled=1 --seeds=1 \
      --methods=labelled-only,FixMatch

Every run is `configs/semi_supervised.py:<row's options>,labelled=n` with `--config.seed=s` in
`<workdir>/<method>/<n>/seed<s>` (`launch.train` would give the same run); then
`pipelines/model_selection.select_and_test` evaluates every kept checkpoint on the validation
patients, picks the best mean Dice and tests it. The table (mean ± std over the seeds of the
selected checkpoints' test metrics, each seed's Dice, and on how many seeds each ordering holds)
goes to `<workdir>/results.md`. Re-running resumes. `--options` adds config options (e.g. `smoke`).
"""

from absl import app, flags

from configs import semi_supervised
from launch import common
from mlsup_jax.pipelines import model_selection, seed_grid

# Row name → config options, in table order.
METHODS = {
  "labelled-only": "kind=labelled_only",
  "Mean Teacher": "kind=mean_teacher",
  "UA-MT": "kind=uamt",
  "FixMatch": "kind=fixmatch",
  "CPS": "kind=cps",
  "ACTION (fine-tuning)": "kind=action",
  "ACTION (pretraining + fine-tuning)": "kind=action,pretrain",
  "ACTION++": "kind=action_pp",
  "ARCO": "kind=arco",
  "MONA": "kind=mona",
}
METRICS = ("dice", "dice/rv", "dice/myocardium", "dice/lv", "iou", "hd95", "asd")
LABELS = {
  "dice": "mean Dice",
  "dice/rv": "RV",
  "dice/myocardium": "MYO",
  "dice/lv": "LV",
  "iou": "IoU",
  "hd95": "HD95 (mm)",
  "asd": "ASD (mm)",
}
ORDERINGS = tuple(
  (f"{name} > labelled-only", ((name, "labelled-only"),))
  for name in METHODS
  if name != "labelled-only"
) + (
  ("UA-MT > Mean Teacher", (("UA-MT", "Mean Teacher"),)),
  ("ACTION > Mean Teacher", (("ACTION (fine-tuning)", "Mean Teacher"),)),
  ("ACTION++ > ACTION", (("ACTION++", "ACTION (fine-tuning)"),)),
  # The same objective; ARCO draws the contrast's queries by stratified groups, MONA uniformly.
  ("ARCO > MONA", (("ARCO", "MONA"),)),
  *((f"{name} > Mean Teacher", ((name, "Mean Teacher"),)) for name in ("ACTION++", "ARCO", "MONA")),
)
GRID = seed_grid.Grid("labelled", METRICS, ORDERINGS)

_LABELLED = flags.DEFINE_list("labelled", ["1", "3", "7"], "Labelled training patients.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Training seeds 0 … N−1.")
_METHODS = flags.DEFINE_list("methods", list(METHODS), "Rows to run.")
_OPTIONS = flags.DEFINE_string("options", "", "Config options besides kind and labelled.")


def main(argv):
  del argv
  common.start()
  unknown = sorted(set(_METHODS.value) - set(METHODS))
  if unknown:
    raise app.UsageError(f"Unknown --methods {unknown}; expected some of {list(METHODS)}.")

  def make_config(method, labelled):
    options = ",".join(o for o in (_OPTIONS.value, METHODS[method]) if o)
    return semi_supervised.get_config(f"{options},labelled={labelled}")

  study = seed_grid.run_grid(
    GRID,
    make_config,
    common.WORKDIR.value,
    _METHODS.value,
    [int(n) for n in _LABELLED.value],
    range(_SEEDS.value),
    run=model_selection.train_and_select,
    labels=LABELS,
  )
  print(study["markdown"])


if __name__ == "__main__":
  app.run(main)
