"""MedShift's outputs: the dataset-quality matrix (JSON + markdown + figure), detection summary.

The matrix has one row per level TOP k … TOP 1 (`pipelines/medshift.py` defines the levels) and
the columns in `COLUMNS`. Lower OTDD is better (closer to the internal set).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from mlsup_jax.metrics import ood as ood_metrics

# (row key, markdown header).
COLUMNS = (
  ("kept", "#kept"),
  ("removed", "#removed"),
  ("removed_shifted", "#shifted removed"),
  ("kept_shifted_fraction", "shifted share kept"),
  ("retrained_accuracy", "acc. (retrained, internal test) ↑"),
  ("retrained_macro_f1", "macro F1 (retrained) ↑"),
  ("internal_accuracy", "acc. (internal G on level) ↑"),
  ("otdd_distance_mean", "OTDD ↓"),
  ("otdd_distance_std", "OTDD std"),
)


def within_class_ranks(scores, class_ids) -> np.ndarray:
  """Each score's rank within its class, scaled to (0, 1): `[N]` (groups are per class too)."""
  scores, class_ids = np.asarray(scores), np.asarray(class_ids)
  ranks = np.zeros(len(scores))
  for c in np.unique(class_ids):
    members = np.flatnonzero(class_ids == c)
    order = np.argsort(np.argsort(scores[members], kind="stable"), kind="stable")
    ranks[members] = (order + 0.5) / len(members)
  return ranks


def detection_summary(scores, external: Mapping, class_names: Sequence[str]) -> dict | None:
  """AUROC of the detector scores for the injected shifts, when the external set flags them.

  Returns:
    None without a `shifted` flag; else `{"auroc_within_class_rank", "per_class": {name:
    auroc}, "per_shift_type": {type: auroc of that type vs unshifted}}` — AUROCs pooled over
    classes use the within-class ranks (scores of different detectors are not comparable).
  """
  if "shifted" not in external:
    return None
  shifted = np.asarray(external["shifted"]).astype(int)
  class_ids = np.asarray(external["class_id"])
  ranks = within_class_ranks(scores, class_ids)
  summary = {"auroc_within_class_rank": ood_metrics.auroc(ranks, shifted), "per_class": {}}
  for c in np.unique(class_ids):
    members = class_ids == c
    summary["per_class"][class_names[int(c)]] = ood_metrics.auroc(scores[members], shifted[members])
  if "shift_type" in external:
    from mlsup_jax.data.phantoms.shifted_external import SHIFT_TYPES

    types = np.asarray(external["shift_type"])
    summary["per_shift_type"] = {}
    for t in np.unique(types[types > 0]):
      pick = (types == t) | (types == 0)
      summary["per_shift_type"][SHIFT_TYPES[int(t)]] = ood_metrics.auroc(
        ranks[pick], (types[pick] == t).astype(int)
      )
  return summary


def _fmt(value) -> str:
  if value is None:
    return "—"
  if isinstance(value, int):
    return str(value)
  return "—" if not math.isfinite(value) else f"{value:.3f}"


def render_markdown(rows: Sequence[Mapping], k: int, grouping: str, detection) -> str:
  columns = [(key, title) for key, title in COLUMNS if any(key in row for row in rows)]
  lines = [
    f"### MedShift dataset-quality matrix ({grouping} grouping, k = {k})",
    "",
    "| level | " + " | ".join(title for _, title in columns) + " |",
    "|---|" + "---|" * len(columns),
  ]
  for row in rows:
    lines.append(
      f"| {row['level']} | " + " | ".join(_fmt(row.get(key)) for key, _ in columns) + " |"
    )
  if detection is not None:
    lines += [
      "",
      f"Detector AUROC for the injected shifts (within-class ranks): "
      f"{_fmt(detection['auroc_within_class_rank'])}",
    ]
    for label, table in (("per class", "per_class"), ("per shift type", "per_shift_type")):
      if table in detection:
        cells = ", ".join(f"{name} {_fmt(v)}" for name, v in detection[table].items())
        lines.append(f"- {label}: {cells}")
  return "\n".join(lines)


def write_report(
  workdir: str, rows, k: int, grouping: str, detection, detector_results
) -> dict[str, str]:
  """Writes `matrix.json`, `matrix.md` and `medshift.png` in `workdir`."""
  from mlsup_jax.viz.medshift import save_quality_figure

  markdown = render_markdown(rows, k, grouping, detection)
  with open(os.path.join(workdir, "matrix.md"), "w") as f:
    f.write(markdown + "\n")
  with open(os.path.join(workdir, "matrix.json"), "w") as f:
    json.dump(
      {
        "k": k,
        "grouping": grouping,
        "rows": list(rows),
        "detection": detection,
        "detectors": detector_results,
      },
      f,
      indent=2,
    )
  figure = save_quality_figure(os.path.join(workdir, "medshift.png"), rows)
  return {"markdown": markdown, "figure": figure}


# Claims of the curation rule, checked on every seed: (name, test on one seed's rows by level).
SEED_CLAIMS = (
  (
    "removing the most anomalous group lowers OTDD (TOP k−1 < TOP k)",
    lambda by: by[1]["otdd_distance_mean"] < by[0]["otdd_distance_mean"],
  ),
  (
    "the OTDD minimum is an intermediate level (not TOP k or TOP 1)",
    lambda by: 0 < int(np.argmin([r["otdd_distance_mean"] for r in by])) < len(by) - 1,
  ),
  (
    "the internal classifier is more accurate on TOP 1 than on TOP k",
    lambda by: by[-1]["internal_accuracy"] > by[0]["internal_accuracy"],
  ),
  (
    "a classifier retrained on TOP k−1 beats one retrained on TOP k",
    lambda by: by[1]["retrained_accuracy"] > by[0]["retrained_accuracy"],
  ),
)


def aggregate_seeds(per_seed: Sequence[Mapping]) -> dict:
  """One MedShift matrix per seed → `{"rows": {level: {column: [per seed]}}, "detection":
  {name: [per seed]}, "holds": {claim: seeds}}` (levels in TOP k … TOP 1 order)."""
  levels = [row["level"] for row in per_seed[0]["rows"]]
  rows = {
    level: {
      key: [next(r for r in seed["rows"] if r["level"] == level).get(key) for seed in per_seed]
      for key, _ in COLUMNS
    }
    for level in levels
  }
  detection = {}
  for seed in per_seed:
    summary = seed.get("detection") or {}
    flat = {"all": summary.get("auroc_within_class_rank")}
    flat.update(summary.get("per_shift_type", {}))
    for name, value in flat.items():
      detection.setdefault(name, []).append(value)
  holds = {
    claim: int(sum(bool(test(list(seed["rows"]))) for seed in per_seed))
    for claim, test in SEED_CLAIMS
  }
  return {"rows": rows, "detection": detection, "holds": holds}


def render_seeds_markdown(summary: Mapping, seeds: Sequence[int]) -> str:
  """The quality matrix as mean ± std over seeds (each seed's value in brackets)."""
  from mlsup_jax.pipelines.seed_grid import mean_std_cell

  columns = [(k, t) for k, t in COLUMNS if k != "otdd_distance_std"]
  lines = [
    f"### MedShift quality matrix, mean ± std over seeds {list(seeds)}",
    "",
    "| level | " + " | ".join(title for _, title in columns) + " |",
    "|---|" + "---|" * len(columns),
  ]
  for level, cells in summary["rows"].items():
    values = []
    for key, _ in columns:
      digits = 0 if key in ("kept", "removed", "removed_shifted") else 3
      values.append(mean_std_cell(cells[key], digits=digits))
    lines.append(f"| {level} | " + " | ".join(values) + " |")
  lines += ["", "Detector AUROC of the injected shifts (within-class ranks):", ""]
  for name, values in summary["detection"].items():
    lines.append(f"- {name}: {mean_std_cell(values)}")
  lines += ["", f"Claims, seeds on which they hold (of {len(seeds)}):", ""]
  lines += [f"- {claim}: {n} / {len(seeds)}" for claim, n in summary["holds"].items()]
  return "\n".join(lines)
