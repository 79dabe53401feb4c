"""The noisy-label study: U-Net, MW-Net, MCPM and PINT's variants over noise ratios and seeds.

`run_grid(make_config, workdir, methods, ratios, seeds)` trains and evaluates every method at
every noise ratio r and training seed (`workdir/<method>/r<r>/seed<s>`; re-running resumes,
finished runs are only re-evaluated) on the same data — `make_config(method, ratio)` gives the
config (`launch/noisy_labels.py`: the `noisy_labels` pool of `configs/mcpm.py` /
`configs/pint.py`, `small` size by default: 32² slices, 600 steps) — and writes
`workdir/results.md` and `results.json`: per r and method the mean ± std over the seeds of Dice,
IoU, mIoU, HD95 and ASD (every seed's Dice beside it), and on how many seeds each of the papers'
orderings holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mlsup_jax.pipelines import seed_grid

METRICS = ("dice", "iou", "miou", "hd95", "asd")
LABELS = {"dice": "Dice", "iou": "IoU", "miou": "mIoU", "hd95": "HD95", "asd": "ASD"}
# (claim, [(better, worse), ...]) on Dice: a claim holds on a seed when every pair does.
ORDERINGS = (
  ("MCPM > U-Net", (("MCPM", "U-Net"),)),
  ("MCPM > MW-Net > U-Net", (("MCPM", "MW-Net"), ("MW-Net", "U-Net"))),
  ("PINT > plain", (("PINT", "plain"),)),
  ("PINT > PNT and INT", (("PINT", "PNT"), ("PINT", "INT"))),
)
GRID = seed_grid.Grid("r", METRICS, ORDERINGS, setting_dir="r{}")
with_seed = seed_grid.with_seed


def summarize(results: dict, ratios, seeds) -> dict:
  """`{"cells": {r: {method: {metric: [per seed]}}}, "holds": {r: {claim: count}}}`."""
  return seed_grid.summarize(GRID, results, [f"{r:g}" for r in ratios], seeds)


def render_markdown(summary: dict) -> str:
  """The table: Dice `mean ± std (per seed)`, the other metrics `mean ± std`; the orderings."""
  return seed_grid.render_markdown(GRID, summary, LABELS)


def run_grid(
  make_config: Callable,
  workdir: str,
  methods: Sequence[str],
  ratios: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8),
  seeds: Sequence[int] = (0, 1, 2),
) -> dict:
  """Trains and evaluates the grid (module docstring); returns the summary and its markdown.

  Args:
    make_config: `(method, ratio) -> config` (a method config at that noise ratio).
    workdir: the study folder.
    methods: row names, in table order.
    ratios: noise ratios r.
    seeds: training seeds.
  """
  return seed_grid.run_grid(
    GRID, make_config, workdir, methods, [float(r) for r in ratios], seeds, labels=LABELS
  )
