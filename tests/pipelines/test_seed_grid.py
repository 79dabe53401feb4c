"""The study grid's summary: orderings per seed, and metrics some methods do not report."""

import numpy as np

from mlsup_jax.pipelines import seed_grid

GRID = seed_grid.Grid("backbone", ("dice", "coarse/dice"), (("A > B", (("A", "B"),)),))


def test_summary_counts_orderings_and_tolerates_missing_metrics():
  results = {
    "A": {"unet": {"0": {"dice": 0.8, "coarse/dice": 0.7}, "1": {"dice": 0.6, "coarse/dice": 0.5}}},
    "B": {"unet": {"0": {"dice": 0.7}, "1": {"dice": 0.65}}},
  }
  summary = seed_grid.summarize(GRID, results, ["unet"], [0, 1])
  assert summary["holds"]["unet"]["A > B"] == 1
  assert np.isnan(summary["cells"]["unet"]["B"]["coarse/dice"]).all()
  markdown = seed_grid.render_markdown(GRID, summary)
  row = next(line for line in markdown.splitlines() if line.startswith("| unet | B |"))
  assert row.rstrip().endswith("| — |")
