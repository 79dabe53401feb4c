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

import copy
import json
import os
from collections.abc import Callable, Sequence

import jax
import numpy as np

from mlsup_jax.core import trainer

METRICS = ("dice", "iou", "miou", "hd95", "asd")
# (claim, [(better, worse), ...]) on Dice: a claim holds on a seed when every pair does.
ORDERINGS = (
  ("MCPM > U-Net", [("MCPM", "U-Net")]),
  ("MCPM > MW-Net > U-Net", [("MCPM", "MW-Net"), ("MW-Net", "U-Net")]),
  ("PINT > plain", [("PINT", "plain")]),
  ("PINT > PNT and INT", [("PINT", "PNT"), ("PINT", "INT")]),
)


def with_seed(config, seed: int):
  """`config` with training seed `seed` (model initialisation and training randomness; the
  data, their order and the noise stay the same)."""
  config = copy.deepcopy(config)
  with config.unlocked():
    config.seed = seed
    config.train.tensorboard = False
  return config


def summarize(results: dict, ratios, seeds) -> dict:
  """`{"cells": {r: {method: {metric: [per seed]}}}, "holds": {r: {claim: count}}}`."""
  cells, holds = {}, {}
  for ratio in ratios:
    key = f"{ratio:g}"
    cells[key] = {
      method: {m: [results[method][key][s][m] for s in map(str, seeds)] for m in METRICS}
      for method in results
    }
    dice = {method: np.asarray(v["dice"]) for method, v in cells[key].items()}
    holds[key] = {
      claim: int(np.sum(np.all([dice[a] > dice[b] for a, b in pairs], axis=0)))
      for claim, pairs in ORDERINGS
      if all(a in dice and b in dice for a, b in pairs)
    }
  return {"cells": cells, "holds": holds, "seeds": list(seeds)}


def render_markdown(summary: dict) -> str:
  """The table: Dice `mean ± std (per seed)`, the other metrics `mean ± std`; the orderings."""
  n = len(summary["seeds"])
  lines = [
    f"Mean ± std over {n} training seeds {summary['seeds']} (Dice of each seed in brackets).",
    "",
    "| r | method | Dice | IoU | mIoU | HD95 | ASD |",
    "|---|---|---|---|---|---|---|",
  ]
  for ratio, methods in summary["cells"].items():
    for method, values in methods.items():
      cells = []
      for metric in METRICS:
        v = np.asarray(values[metric], np.float64)
        text = (
          f"{v.mean():.3f} ± {v.std():.3f}"
          if metric != "hd95" and metric != "asd"
          else (f"{v.mean():.2f} ± {v.std():.2f}")
        )
        if metric == "dice":
          text += " (" + " / ".join(f"{x:.3f}" for x in v) + ")"
        cells.append(text)
      lines.append(f"| {ratio} | {method} | " + " | ".join(cells) + " |")
  lines += ["", "Orderings on Dice, seeds on which they hold:", ""]
  for ratio, claims in summary["holds"].items():
    text = "; ".join(f"{claim} {k} / {n}" for claim, k in claims.items())
    lines.append(f"- r = {ratio}: {text}")
  return "\n".join(lines)


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
  results: dict = {}
  for method in methods:
    for ratio in ratios:
      for seed in seeds:
        config = with_seed(make_config(method, ratio), seed)
        path = os.path.join(workdir, method.replace(" ", "_"), f"r{ratio:g}", f"seed{seed}")
        metrics = trainer.train_and_evaluate(config, path)
        results.setdefault(method, {}).setdefault(f"{ratio:g}", {})[str(seed)] = metrics
  summary = summarize(results, ratios, seeds)
  markdown = render_markdown(summary)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "results.md"), "w") as f:
      f.write(markdown + "\n")
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump({"summary": summary, "results": results}, f, indent=2)
  return {"summary": summary, "markdown": markdown, "results": results}
