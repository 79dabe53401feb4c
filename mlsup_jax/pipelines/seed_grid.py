"""A study grid: methods × settings × training seeds, mean ± std and ordering counts.

The noisy-label study (settings = noise ratios) and the semi-supervised study (settings =
labelled patients) are both this grid: `run_grid` trains and evaluates every cell
(`workdir/<method>/<setting>/seed<s>`; re-running resumes, finished runs are only
re-evaluated), `summarize` gathers the metrics per setting and method and counts the seeds on
which each claimed ordering holds (a claim holds on a seed when every `(better, worse)` pair of it
does on the first metric), and `render_markdown` writes the table: the first metric's mean ± std
with each seed's value, the others' mean ± std.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import numpy as np

from mlsup_jax.core import trainer

# Metrics whose values are distances (two decimals in tables); the rest are fractions.
DISTANCES = ("hd", "hd95", "asd")


class Grid(NamedTuple):
  """What a study reports.

  Attributes:
    setting_name: the settings' column header (e.g. "r", "labelled").
    metrics: metric keys of the runs' results, the first one ranks (e.g. "dice").
    orderings: `(claim, [(better, worse), ...])` pairs of method names.
    setting_dir: a setting's folder name, `setting_dir.format(setting)` (e.g. "r{}").
  """

  setting_name: str
  metrics: tuple[str, ...]
  orderings: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
  setting_dir: str = "{}"


def with_seed(config, seed: int):
  """`config` with training seed `seed` (model initialisation and training randomness; the
  data, their order and any label noise stay the same)."""
  config = copy.deepcopy(config)
  with config.unlocked():
    config.seed = seed
    config.train.tensorboard = False
  return config


def summarize(grid: Grid, results: dict, settings: Sequence[str], seeds) -> dict:
  """`{"cells": {setting: {method: {metric: [per seed]}}}, "holds": {setting: {claim: n}}}`.

  Args:
    grid: what to report.
    results: `{method: {setting: {str(seed): {metric: value}}}}` (a metric a method does not
      report is NaN, shown as —).
    settings: setting keys, in table order.
    seeds: the seeds.
  """
  cells, holds = {}, {}
  ranking = grid.metrics[0]
  for key in settings:
    cells[key] = {
      method: {
        m: [float(results[method][key][str(s)].get(m, np.nan)) for s in seeds] for m in grid.metrics
      }
      for method in results
      if key in results[method]
    }
    score = {method: np.asarray(v[ranking]) for method, v in cells[key].items()}
    holds[key] = {
      claim: int(np.sum(np.all([score[a] > score[b] for a, b in pairs], axis=0)))
      for claim, pairs in grid.orderings
      if all(a in score and b in score for a, b in pairs)
    }
  return {"cells": cells, "holds": holds, "seeds": list(seeds)}


def write_study(workdir: str, markdown: str, payload: dict) -> None:
  """`workdir/results.md` (the tables) and `results.json` (`payload`), on process 0 only."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown + "\n")
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(payload, f, indent=2)


def stack_tables(per_seed: Sequence[Mapping], names: Sequence[str]) -> dict:
  """`{table: {row: {column: value}}}` per seed → `{table: {row: {column: [value per seed]}}}`.

  Rows and columns follow the first seed; a cell missing on a seed is None there.

  Example:
    >>> from mlsup_jax.pipelines.seed_grid import stack_tables
    >>> stack_tables([{"t": {"A": {"auroc": 0.6}}}, {"t": {"A": {"auroc": 0.7}}}], ["t"])
    {'t': {'A': {'auroc': [0.6, 0.7]}}}
  """
  return {
    name: {
      row: {col: [seed[name].get(row, {}).get(col) for seed in per_seed] for col in cols}
      for row, cols in per_seed[0][name].items()
    }
    for name in names
  }


def count_holds(per_seed_claims: Sequence[Mapping[str, bool | None]]) -> dict[str, int]:
  """On how many seeds each claim held (`True`)."""
  return {claim: sum(bool(c.get(claim)) for c in per_seed_claims) for claim in per_seed_claims[0]}


def mean_std_cell(values, digits: int = 3, scale: float = 1.0) -> str:
  """`mean ± std (v0 / v1 / …)` over the finite values; — when there is none.

  Example:
    >>> from mlsup_jax.pipelines.seed_grid import mean_std_cell
    >>> mean_std_cell([0.61, 0.65, None])
    '0.630 ± 0.020 (0.610 / 0.650 / —)'
  """
  finite = [scale * v for v in values if v is not None and np.isfinite(v)]
  if not finite:
    return "—"
  each = " / ".join("—" if v is None else f"{scale * v:.{digits}f}" for v in values)
  return f"{np.mean(finite):.{digits}f} ± {np.std(finite):.{digits}f} ({each})"


def _cell(metric: str, values) -> str:
  v = np.asarray(values, np.float64)
  if not np.isfinite(v).any():
    return "—"
  digits = 2 if metric in DISTANCES else 3
  return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def render_markdown(grid: Grid, summary: dict, labels: dict[str, str] | None = None) -> str:
  """The table (first metric with each seed's value in brackets) and the ordering counts.

  Args:
    grid: what to report.
    summary: `summarize`'s result.
    labels: column headers for metric keys (default: the keys).
  """
  labels = labels or {}
  n = len(summary["seeds"])
  ranking = grid.metrics[0]
  header = [grid.setting_name, "method", *(labels.get(m, m) for m in grid.metrics)]
  lines = [
    f"Mean ± std over {n} training seeds {summary['seeds']} "
    f"({labels.get(ranking, ranking)} of each seed in brackets).",
    "",
    "| " + " | ".join(header) + " |",
    "|" + "---|" * len(header),
  ]
  for setting, methods in summary["cells"].items():
    for method, values in methods.items():
      cells = [_cell(m, values[m]) for m in grid.metrics]
      cells[0] += " (" + " / ".join(f"{x:.3f}" for x in values[ranking]) + ")"
      lines.append(f"| {setting} | {method} | " + " | ".join(cells) + " |")
  lines += ["", f"Orderings on {labels.get(ranking, ranking)}, seeds on which they hold:", ""]
  for setting, claims in summary["holds"].items():
    text = "; ".join(f"{claim} {k} / {n}" for claim, k in claims.items())
    lines.append(f"- {grid.setting_name} = {setting}: {text}")
  return "\n".join(lines)


def run_grid(
  grid: Grid,
  make_config: Callable,
  workdir: str,
  methods: Sequence[str],
  settings: Sequence,
  seeds: Sequence[int] = (0, 1, 2),
  run: Callable | None = None,
  labels: dict[str, str] | None = None,
) -> dict:
  """Trains and evaluates the grid; writes `workdir/results.md` and `results.json`.

  Args:
    grid: what to report.
    make_config: `(method, setting) -> config`.
    workdir: the study folder.
    methods: row names, in table order.
    settings: the settings (formatted with `:g` when numbers).
    seeds: training seeds.
    run: `(config, run_dir) -> results` (default `trainer.train_and_evaluate`), e.g. training
      followed by model selection on validation data.
    labels: column headers for metric keys.

  Returns:
    `{"summary", "markdown", "results"}`.
  """
  run = run or trainer.train_and_evaluate
  keys = [f"{s:g}" if isinstance(s, int | float) else str(s) for s in settings]
  results: dict = {}
  for method in methods:
    for setting, key in zip(settings, keys, strict=True):
      for seed in seeds:
        config = with_seed(make_config(method, setting), seed)
        folder = grid.setting_dir.format(key)
        path = os.path.join(workdir, method.replace(" ", "_"), folder, f"seed{seed}")
        results.setdefault(method, {}).setdefault(key, {})[str(seed)] = run(config, path)
  summary = summarize(grid, results, keys, seeds)
  markdown = render_markdown(grid, summary, labels)
  write_study(workdir, markdown, {"summary": summary, "results": results})
  return {"summary": summary, "markdown": markdown, "results": results}
