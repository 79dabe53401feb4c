r"""The MORSE study: backbone alone vs backbone + MORSE and the head's ablations, over seeds.

  python -m launch.morse --workdir=runs/morse_study --seeds=3
  python -m launch.morse --workdir=runs/morse_study --backbones=unet,scunet --options=small

Trains every variant of `configs/morse.py` (rows) on every backbone (settings) for seeds
0 … N−1 (`pipelines/seed_grid.py`; re-running resumes), evaluates the last step on the test
patients, and writes `<workdir>/results.md` / `results.json`: mean ± std of Dice, HD95, ASD and
boundary-pixel accuracy (and, for the MORSE rows, the coarse prediction's), the orderings on
Dice, and on how many seeds the refined prediction beats the head's own coarse one on boundary
pixels and on Dice.
"""

from absl import app, flags

from configs import morse as morse_config
from launch import common
from mlsup_jax.pipelines import seed_grid

# Row name → the `variant` option, in table order.
METHODS = {
  "backbone alone": "backbone",
  "MORSE (implicit + MoE + stochastic gating)": "morse",
  "implicit head only": "implicit_only",
  "MoE only": "moe_only",
  "MORSE without stochastic gating": "no_stochastic_gating",
}
FULL = "MORSE (implicit + MoE + stochastic gating)"
METRICS = ("dice", "hd95", "asd", "boundary_accuracy", "coarse/dice", "coarse/boundary_accuracy")
LABELS = {
  "dice": "mean Dice",
  "hd95": "HD95 (mm)",
  "asd": "ASD (mm)",
  "boundary_accuracy": "boundary acc.",
  "coarse/dice": "coarse Dice",
  "coarse/boundary_accuracy": "coarse boundary acc.",
}
ORDERINGS = (
  ("MORSE > backbone alone", ((FULL, "backbone alone"),)),
  ("MORSE > implicit head only", ((FULL, "implicit head only"),)),
  ("MORSE > MoE only", ((FULL, "MoE only"),)),
  ("stochastic gating helps", ((FULL, "MORSE without stochastic gating"),)),
)
GRID = seed_grid.Grid("backbone", METRICS, ORDERINGS)

_BACKBONES = flags.DEFINE_list("backbones", ["unet"], "Backbones (settings).")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Training seeds 0 … N−1.")
_METHODS = flags.DEFINE_list("methods", list(METHODS), "Rows to run.")
_OPTIONS = flags.DEFINE_string("options", "small", "configs/morse.py options besides variant.")


def refinement_holds(summary: dict) -> dict:
  """Per backbone and MORSE row: seeds on which refined > coarse (boundary accuracy, Dice)."""
  holds = {}
  for setting, rows in summary["cells"].items():
    for method, metrics in rows.items():
      if method == "backbone alone" or "coarse/dice" not in metrics:
        continue
      pairs = {
        "boundary accuracy": ("boundary_accuracy", "coarse/boundary_accuracy"),
        "Dice": ("dice", "coarse/dice"),
      }
      for name, (refined, coarse) in pairs.items():
        wins = sum(
          r is not None and c is not None and r > c
          for r, c in zip(metrics[refined], metrics[coarse], strict=True)
        )
        holds[f"{setting}: {method}: refined > coarse on {name}"] = wins
  return holds


def main(argv):
  del argv
  common.start()
  unknown = sorted(set(_METHODS.value) - set(METHODS))
  if unknown:
    raise app.UsageError(f"Unknown --methods {unknown}; expected some of {list(METHODS)}.")

  def make_config(method, backbone):
    options = ",".join(o for o in (_OPTIONS.value, f"variant={METHODS[method]}") if o)
    return morse_config.get_config(f"{options},backbone={backbone}")

  seeds = range(_SEEDS.value)
  study = seed_grid.run_grid(
    GRID, make_config, common.WORKDIR.value, _METHODS.value, _BACKBONES.value, seeds, labels=LABELS
  )
  holds = refinement_holds(study["summary"])
  lines = ["", "", "Refined vs the head's own coarse prediction, seeds on which it holds:", ""]
  lines += [f"- {claim}: {n} / {len(seeds)}" for claim, n in holds.items()]
  markdown = study["markdown"] + "\n".join(lines) + "\n"
  seed_grid.write_study(
    common.WORKDIR.value, markdown, {"summary": study["summary"], "refinement": holds}
  )
  print(markdown)


if __name__ == "__main__":
  app.run(main)
