"""The MaxQuery study: train U-Net, MaxQuery w/o QD and MaxQuery; print the paper's tables.

`run_study({"unet": cfg, "noqd": cfg, "maxquery": cfg}, workdir)` trains and evaluates each
variant in `workdir/<variant>` (re-running resumes or, when finished, just re-evaluates), then
writes `workdir/results.md`, `workdir/results.json` and `workdir/ood_roc.png`, and returns the
tables. The tables follow Yuan et al. (CVPR 2023):

1. inlier Dice per class (U-Net vs MaxQuery w/o QD vs MaxQuery);
2. OOD localization — pixel AUROC / AUPR / FPR95 and case-level AUC — for MC Dropout, MSP,
   MaxLogit, SML, Energy (all on the U-Net) and MaxQuery w/o QD, MaxQuery;
3. the score-level ablation of the MaxQuery model (category/query level × post/pre softmax).

`run_seeds(configs, workdir, seeds)` runs the study once per seed (`workdir/seed_<s>`; the
training seed and the data order change, the phantom does not) and writes the same tables as
mean ± std over the seeds with every seed's value beside it, and how many seeds each of the
paper's orderings holds on (`workdir/results.md`, `results.json`).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence

import jax
import ml_collections
import numpy as np

from mlsup_jax.core import trainer
from mlsup_jax.pipelines import seed_grid

# (row name, variant, score key) of the OOD table, in the paper's row order.
OOD_ROWS = (
  ("MC Dropout", "unet", "mc_dropout"),
  ("MSP", "unet", "msp"),
  ("MaxLogit", "unet", "max_logit"),
  ("SML", "unet", "sml"),
  ("Energy", "unet", "energy"),
  ("MaxQuery w/o QD", "noqd", "maxquery"),
  ("MaxQuery", "maxquery", "maxquery"),
)
ABLATION_ROWS = (
  ("category", "post", "category_post"),
  ("category", "pre", "category_pre"),
  ("query", "post", "maxquery_post"),
  ("query", "pre", "maxquery"),
)
VARIANT_NAMES = {"unet": "U-Net", "noqd": "MaxQuery w/o QD", "maxquery": "MaxQuery"}
OOD_METRICS = (
  ("auroc", "AUROC ↑"),
  ("aupr", "AUPR ↑"),
  ("fpr95", "FPR95 ↓"),
  ("case_auc", "case AUC ↑"),
)


def _percent(value: float | None) -> str:
  return "—" if value is None or not math.isfinite(value) else f"{100 * value:.2f}"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


def build_tables(results: Mapping[str, Mapping[str, float]], class_names) -> dict:
  """The three tables (as nested dicts of fractions) from each variant's evaluation results."""
  dice = {}
  for variant, metrics in results.items():
    dice[VARIANT_NAMES[variant]] = {
      **{name: metrics.get(f"dice/{name}") for name in class_names[1:]},
      "tumour avg": metrics.get("dice/tumour_avg"),
    }
  ood = {}
  for row, variant, score in OOD_ROWS:
    if variant in results and f"{score}/auroc" in results[variant]:
      ood[row] = {m: results[variant][f"{score}/{m}"] for m, _ in OOD_METRICS}
  ablation = {}
  if "maxquery" in results:
    for level, softmax, score in ABLATION_ROWS:
      ablation[f"{level} / {softmax}"] = {
        m: results["maxquery"].get(f"{score}/{m}") for m, _ in OOD_METRICS
      }
  return {"inlier_dice": dice, "ood_localization": ood, "score_ablation": ablation}


def ordering(tables: dict) -> dict[str, bool | None]:
  """Which of the paper's AUROC orderings hold (None when a method is missing)."""
  auroc = {row: v["auroc"] for row, v in tables["ood_localization"].items()}

  def greater(a, b, strict=True):
    if a not in auroc or b not in auroc:
      return None
    return bool(auroc[a] > auroc[b]) if strict else bool(auroc[a] >= auroc[b])

  return {
    "MaxQuery > MaxQuery w/o QD": greater("MaxQuery", "MaxQuery w/o QD"),
    "MaxQuery w/o QD > MaxLogit": greater("MaxQuery w/o QD", "MaxLogit"),
    "MaxLogit >= MSP": greater("MaxLogit", "MSP", strict=False),
    "MaxQuery > every baseline": all(
      greater("MaxQuery", row) for row, _, _ in OOD_ROWS if row in auroc and row != "MaxQuery"
    )
    if "MaxQuery" in auroc
    else None,
  }


def render_markdown(tables: dict, class_names, checks: dict) -> str:
  """The tables as markdown, percentages with two decimals."""
  dice_cols = list(class_names[1:]) + ["tumour avg"]
  dice_rows = [
    [name] + [_percent(values[c]) for c in dice_cols]
    for name, values in tables["inlier_dice"].items()
  ]
  ood_rows = [
    [name] + [_percent(values[m]) for m, _ in OOD_METRICS]
    for name, values in tables["ood_localization"].items()
  ]
  ablation_rows = [
    [name] + [_percent(values[m]) for m, _ in OOD_METRICS]
    for name, values in tables["score_ablation"].items()
  ]
  check_lines = [
    f"- {claim}: {'holds' if ok else ('does not hold' if ok is not None else 'n/a')}"
    for claim, ok in checks.items()
  ]
  return "\n\n".join(
    [
      "### Inlier segmentation (Dice %, per case with the class; OOD pixels ignored)",
      _markdown(["method"] + dice_cols, dice_rows),
      "### OOD localization (pixels: in the ground-truth lesions; cases: predicted lesion)",
      _markdown(["method"] + [h for _, h in OOD_METRICS], ood_rows),
      "### MaxQuery score ablation (level / softmax)",
      _markdown(["score"] + [h for _, h in OOD_METRICS], ablation_rows),
      "### The paper's AUROC ordering on this run\n\n" + "\n".join(check_lines),
    ]
  )


def save_roc_figure(workdir: str) -> str | None:
  """Every OOD row's pixel ROC/PR curve on one figure (from each variant's `ood_scores.npz`)."""
  from mlsup_jax.viz.ood import save_roc_curves

  curves = {}
  for row, variant, score in OOD_ROWS:
    path = os.path.join(workdir, variant, "ood_scores.npz")
    if not os.path.exists(path):
      continue
    with np.load(path) as saved:
      if f"pixel/{score}" in saved:
        curves[row] = (saved[f"pixel/{score}"], saved["pixel_label"])
  if not curves:
    return None
  return save_roc_curves(os.path.join(workdir, "ood_roc.png"), curves, title="OOD localization")


def run_study(configs: Mapping[str, ml_collections.ConfigDict], workdir: str) -> dict:
  """Trains + evaluates each variant config, then writes and returns the study's tables.

  Args:
    configs: variant name (`unet`, `noqd`, `maxquery`) → its config (`configs/maxquery.py`).
    workdir: the study folder; each variant runs in `workdir/<variant>`.

  Returns:
    `{"tables": …, "ordering": …, "markdown": str, "results": raw per-variant metrics}`.
  """
  unknown = set(configs) - set(VARIANT_NAMES)
  if unknown:
    raise ValueError(f"Unknown study variants {sorted(unknown)}; expected {list(VARIANT_NAMES)}.")
  results = {}
  for variant, config in configs.items():
    results[variant] = trainer.train_and_evaluate(config, os.path.join(workdir, variant))
  class_names = tuple(next(iter(configs.values())).data.class_names)
  tables = build_tables(results, class_names)
  checks = ordering(tables)
  markdown = render_markdown(tables, class_names, checks)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.md"), "w") as f:
      f.write(markdown + "\n")
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump({"tables": tables, "ordering": checks, "results": results}, f, indent=2)
    save_roc_figure(workdir)
  return {"tables": tables, "ordering": checks, "markdown": markdown, "results": results}


def _with_seed(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  """`config` with training seed and data order `seed` (the phantom itself is unchanged)."""
  config = copy.deepcopy(config)
  with config.unlocked():
    config.seed = seed
    config.data.seed = seed
  return config


def _cell(values: Sequence[float | None]) -> str:
  """`mean ± std (v0 / v1 / …)` in percent; — where a value is missing."""
  finite = [v for v in values if v is not None and math.isfinite(v)]
  if not finite:
    return "—"
  per_seed = " / ".join(_percent(v) for v in values)
  return f"{100 * np.mean(finite):.2f} ± {100 * np.std(finite):.2f} ({per_seed})"


def aggregate(per_seed: Sequence[dict], class_names) -> dict:
  """Mean ± std tables and per-ordering seed counts from `run_study` results, one per seed."""
  tables = seed_grid.stack_tables(
    [result["tables"] for result in per_seed],
    ("inlier_dice", "ood_localization", "score_ablation"),
  )
  holds = seed_grid.count_holds([result["ordering"] for result in per_seed])
  return {"tables": tables, "holds": holds, "seeds": len(per_seed)}


def render_seeds_markdown(summary: dict, class_names) -> str:
  """The aggregated tables: each cell `mean ± std (seed values)` in percent."""
  tables, n = summary["tables"], summary["seeds"]
  dice_cols = list(class_names[1:]) + ["tumour avg"]
  sections = [
    f"Mean ± std over {n} seeds (each seed's value in brackets), percent.",
    "### Inlier segmentation (Dice %, per case with the class; OOD pixels ignored)",
    _markdown(
      ["method"] + dice_cols,
      [[name] + [_cell(v[c]) for c in dice_cols] for name, v in tables["inlier_dice"].items()],
    ),
    "### OOD localization (pixels: in the ground-truth lesions; cases: predicted lesion)",
    _markdown(
      ["method"] + [h for _, h in OOD_METRICS],
      [
        [name] + [_cell(v[m]) for m, _ in OOD_METRICS]
        for name, v in tables["ood_localization"].items()
      ],
    ),
    "### MaxQuery score ablation (level / softmax)",
    _markdown(
      ["score"] + [h for _, h in OOD_METRICS],
      [
        [name] + [_cell(v[m]) for m, _ in OOD_METRICS]
        for name, v in tables["score_ablation"].items()
      ],
    ),
    "### The paper's AUROC orderings across seeds\n\n"
    + "\n".join(f"- {claim}: holds on {k} / {n} seeds" for claim, k in summary["holds"].items()),
  ]
  return "\n\n".join(sections)


def run_seeds(
  configs: Mapping[str, ml_collections.ConfigDict], workdir: str, seeds: Sequence[int]
) -> dict:
  """`run_study` once per seed, then the tables as mean ± std over the seeds (module docstring).

  Returns:
    `{"per_seed": [run_study results], "summary": aggregate(...), "markdown": str}`.
  """
  per_seed = [
    run_study(
      {variant: _with_seed(config, seed) for variant, config in configs.items()},
      os.path.join(workdir, f"seed_{seed}"),
    )
    for seed in seeds
  ]
  class_names = tuple(next(iter(configs.values())).data.class_names)
  summary = aggregate(per_seed, class_names)
  markdown = render_seeds_markdown(summary, class_names)
  seed_grid.write_study(workdir, markdown, {"seeds": list(seeds), **summary})
  return {"per_seed": per_seed, "summary": summary, "markdown": markdown}
