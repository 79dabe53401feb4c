r"""The PMS study: PMS and the BCE-only baseline (same network, same steps) × training seeds.

  python -m launch.pms_study --workdir=runs/pms_study               # `small`, 3 seeds
  python -m launch.pms_study --workdir=runs/pms_study --rows=PMS,BCE --seeds=1 --options=tiny

Every run is `configs/pms.py:<options>,<row's options>` with `--config.seed=s` in
`<workdir>/<row>/<size>/seed<s>` (re-running resumes). The table (`<workdir>/results.md`) ranks
by each run's own retrieval rule (`retrieval/…`: PMS's weighted multi-class similarity, the
baseline's feature cosine) and counts the seeds on which each ordering holds; a second table
gives every retrieval rule of every run (the BCE network retrieved by multi-class similarity
too), so the effect of the PMS stage and of the retrieval rule can be told apart.
"""

import os

from absl import app, flags

from configs import pms as pms_config
from launch import common
from mlsup_jax.pipelines import seed_grid

ROWS = {
  "PMS": "method=pms",
  "BCE": "method=bce",
  "PMS no-ReLU": "method=pms,norelu",
  "PMS BCE-sum": "method=pms,bce_sum",
}
METRICS = (
  "retrieval/map@10/exact",
  "retrieval/precision@1/exact",
  "retrieval/precision@10/exact",
  "retrieval/map@10/partial",
  "retrieval/precision@10/partial",
  "auc/macro",
)
LABELS = {
  "retrieval/map@10/exact": "mAP@10 exact",
  "retrieval/precision@1/exact": "P@1 exact",
  "retrieval/precision@10/exact": "P@10 exact",
  "retrieval/map@10/partial": "mAP@10 partial",
  "retrieval/precision@10/partial": "P@10 partial",
  "auc/macro": "macro AUC",
}
ORDERINGS = tuple((f"{row} > BCE", ((row, "BCE"),)) for row in ROWS if row != "BCE")
RULES = ("pms_weighted", "pms_unweighted", "feature")

_SEEDS = flags.DEFINE_integer("seeds", 3, "Training seeds 0 … N−1.")
_ROWS = flags.DEFINE_list("rows", ["PMS", "BCE", "PMS no-ReLU"], "Rows to run.")
_OPTIONS = flags.DEFINE_string("options", "small", "Config options besides the row's.")


def rules_table(results: dict, rows, size: str, seeds) -> str:
  """Every run × retrieval rule: mAP@10 / P@10 under exact relevance, mean ± std over seeds."""
  lines = [
    "| run | retrieval rule | mAP@10 exact | P@10 exact | mAP@10 partial |",
    "|---|---|---|---|---|",
  ]
  for row in rows:
    runs = [results[row][size][str(s)] for s in seeds]
    for rule in RULES:
      cells = [
        seed_grid.mean_std_cell([r[f"{rule}/{metric}"] for r in runs])
        for metric in ("map@10/exact", "precision@10/exact", "map@10/partial")
      ]
      lines.append(f"| {row} | {rule} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  common.start()
  unknown = sorted(set(_ROWS.value) - set(ROWS))
  if unknown:
    raise app.UsageError(f"Unknown --rows {unknown}; expected some of {list(ROWS)}.")
  size = _OPTIONS.value or "default"
  grid = seed_grid.Grid("size", METRICS, ORDERINGS)

  def make_config(row, setting):
    del setting
    return pms_config.get_config(",".join(o for o in (_OPTIONS.value, ROWS[row]) if o))

  seeds = range(_SEEDS.value)
  study = seed_grid.run_grid(
    grid, make_config, common.WORKDIR.value, _ROWS.value, [size], seeds, labels=LABELS
  )
  table = rules_table(study["results"], _ROWS.value, size, seeds)
  with open(os.path.join(common.WORKDIR.value, "rules.md"), "w") as f:
    f.write(table + "\n")
  print(study["markdown"])
  print(table)


if __name__ == "__main__":
  app.run(main)
