"""The anomaly-detection study: TEND, CVAD and their baselines; the thesis's Ch. 4 tables.

`run_study({"tend": cfg, "cvad": cfg, "vae": cfg}, workdir)` trains and evaluates each run in
`workdir/<run>` (re-running resumes or, when finished, re-evaluates), evaluates every trained
model again on inter-class OOD sets (each modality phantom of `data/phantoms/modalities.py` in
place of the abnormal radiographs) in `workdir/<run>/inter_<modality>`, then writes
`workdir/results.md`, `results.json` and `roc.png` and returns the tables:

1. intra-class OOD (the abnormal radiographs): FPR, TPR, DIFF = TPR − FPR at the G-mean
   threshold, AUROC, accuracy and F1 under the clean protocol (threshold and normalisation from
   the validation split), plus DIFF / AUROC under the thesis's transductive protocol;
2. inter-class OOD: AUROC per modality (Table 4.8's layout);
3. intra-class AUROC per OOD class (each finding alone against the ID test images).

The AutoEncoder row is TEND's stage-1 network (the same AE as `configs/reconstruction_detector.py`);
pchVAE is CVAD's generator alone.
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

from mlsup_jax.core import evaluation, trainer
from mlsup_jax.data.augmentation.distortions import UNSEEN_TRANSFORMS
from mlsup_jax.data.phantoms.modalities import MODALITY_NAMES
from mlsup_jax.metrics import ood as ood_metrics
from mlsup_jax.pipelines import seed_grid, unseen_transforms

# (row name, run, score) in the thesis's row order (Tables 4.3 and 4.7).
ROWS = (
  ("AutoEncoder", "tend", "autoencoder"),
  ("VAE", "vae", "reconstruction"),
  ("MarginLearner", "tend", "margin_learner"),
  ("TEND classifier only", "tend", "classifier"),
  ("TEND (thesis score)", "tend", "tend"),
  ("TEND (code score)", "tend", "tend_code"),
  ("pchVAE (CVAE alone)", "cvad", "cascade_vae"),
  ("CVAD discriminator only", "cvad", "discriminator"),
  ("CVAD", "cvad", "cvad"),
)
RUNS = ("tend", "cvad", "vae")
INTRA_METRICS = (
  ("fpr", "FPR ↓"),
  ("tpr", "TPR ↑"),
  ("diff", "DIFF ↑"),
  ("auroc", "AUROC ↑"),
  ("accuracy", "ACC ↑"),
  ("f1", "F1 ↑"),
  ("transductive/diff", "DIFF (transd.) ↑"),
  ("transductive/auroc", "AUROC (transd.) ↑"),
)
# The claims the issue asks the study to check (AUROC, clean protocol).
CLAIMS = (
  ("TEND (thesis score)", "AutoEncoder"),
  ("TEND (thesis score)", "MarginLearner"),
  ("CVAD", "VAE"),
  ("CVAD", "pchVAE (CVAE alone)"),
)


def _metric(results: Mapping[str, float], score: str, metric: str) -> float | None:
  if metric.startswith("transductive/"):
    return results.get(f"transductive/{score}/{metric.split('/', 1)[1]}")
  return results.get(f"{score}/{metric}")


def _fmt(value: float | None) -> str:
  return "—" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def inter_class_config(
  config: ml_collections.ConfigDict, modality: str, num_cases: int
) -> ml_collections.ConfigDict:
  """`config` with the OOD images of validation and test replaced by a modality phantom."""
  config = copy.deepcopy(config)
  image_size = config.data.train_source.base.image_size
  inter = {
    "name": "phantom_modality",
    "split": "test",
    "num_cases": num_cases,
    "seed": 0,
    "modality": modality,
    "image_size": image_size,
  }
  with config.unlocked():
    for key in ("calibration_source", "eval_source"):
      config.data[key].inter_class = inter
    config.eval.save_figures = False
  return config


SOURCE_KEYS = ("train_source", "calibration_source", "eval_source")


def with_seed(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  """`config` with every seed set to `seed`: the model and training (`config.seed`), the data
  order (`data.seed`), the ID/OOD split and the base phantom's cases, so one study repeats on
  fresh data as well as a fresh initialisation. Inter-class sets keep their own seed."""
  config = copy.deepcopy(config)
  with config.unlocked():
    config.seed = int(seed)
    config.data.seed = int(seed)
    for key in SOURCE_KEYS:
      source = config.data.get(key)
      if source is None:
        continue
      if "seed" in source:
        source.seed = int(seed)
      if "base" in source and "seed" in source.base:
        source.base.seed = int(seed)
  return config


def build_tables(
  results: Mapping[str, Mapping[str, float]],
  inter: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> dict:
  """Intra-class rows (every metric) and inter-class AUROC per modality."""
  intra, inter_table = {}, {}
  for row, run, score in ROWS:
    if run in results and f"{score}/auroc" in results[run]:
      intra[row] = {m: _metric(results[run], score, m) for m, _ in INTRA_METRICS}
      inter_table[row] = {
        modality: per_run[run].get(f"{score}/auroc")
        for modality, per_run in inter.items()
        if run in per_run
      }
  return {"intra_class": intra, "inter_class_auroc": inter_table}


def per_class_auroc(workdir: str, class_names: Sequence[str]) -> dict[str, dict[str, float]]:
  """Intra-class AUROC of every row against each OOD class alone (e.g. one finding).

  From each run's `<run>_scores.npz` (test scores, `ood`, `class_id`): for OOD class c, the ID
  test images vs the OOD test images of class c. Rows whose scores file has no `class_id` are
  left out.

  Returns:
    row → {class name → AUROC}.
  """
  saved = {}  # run → its scores file's arrays, read once (several rows share a run)
  for run in dict.fromkeys(run for _, run, _ in ROWS):
    path = os.path.join(workdir, run, f"{run}_scores.npz")
    if os.path.exists(path):
      with np.load(path) as arrays:
        if "class_id" in arrays:
          saved[run] = dict(arrays)
  table = {}
  for row, run, score in ROWS:
    if run not in saved or score not in saved[run]:
      continue
    scores, ood, class_ids = (
      saved[run][score],
      saved[run]["ood"].astype(bool),
      saved[run]["class_id"],
    )
    table[row] = {}
    for class_id in np.unique(class_ids[ood]):
      keep = ~ood | (class_ids == class_id)
      name = class_names[class_id] if class_id < len(class_names) else f"class {class_id}"
      table[row][name] = ood_metrics.auroc(scores[keep], ood[keep])
  return table


def check_claims(tables: dict) -> dict[str, bool | None]:
  """`"A > B"` → whether A's intra-class AUROC beats B's (None when a row is missing)."""
  intra = tables["intra_class"]
  return {
    f"{a} > {b}": (intra[a]["auroc"] > intra[b]["auroc"]) if a in intra and b in intra else None
    for a, b in CLAIMS
  }


def render_markdown(tables: dict, claims: dict) -> str:
  intra = tables["intra_class"]
  parts = [
    "### Intra-class OOD (the other classes of the ID dataset; clean protocol unless marked)",
    "",
    _markdown(
      ["method"] + [title for _, title in INTRA_METRICS],
      [[row] + [_fmt(v[m]) for m, _ in INTRA_METRICS] for row, v in intra.items()],
    ),
  ]
  inter = tables["inter_class_auroc"]
  modalities = sorted({m for v in inter.values() for m in v}, key=list(MODALITY_NAMES).index)
  if modalities:
    parts += [
      "",
      "### Inter-class OOD (AUROC; other modalities as OOD)",
      "",
      _markdown(
        ["method"] + modalities,
        [[row] + [_fmt(v.get(m)) for m in modalities] for row, v in inter.items() if v],
      ),
    ]
  per_class = tables.get("per_class_auroc", {})
  classes = list(dict.fromkeys(c for v in per_class.values() for c in v))
  if classes:
    parts += [
      "",
      "### Intra-class AUROC per OOD class (the ID test images vs that class's test images)",
      "",
      _markdown(
        ["method"] + classes,
        [[row] + [_fmt(v.get(c)) for c in classes] for row, v in per_class.items()],
      ),
    ]
  unseen = tables.get("unseen_acc", {})
  names = [n for n in UNSEEN_TRANSFORMS if any(n in v for v in unseen.values())]
  if names:
    parts += [
      "",
      "### ACC on unseen transformations (transformed ID test images flagged at t*; ↑)",
      "",
      _markdown(
        ["method"] + names,
        [[row] + [_fmt(v.get(n)) for n in names] for row, v in unseen.items()],
      ),
    ]
  parts += ["", "### The thesis's claims on this run (intra-class AUROC)", ""]
  parts += [
    f"- {claim}: {'—' if ok is None else ('holds' if ok else 'does not hold')}"
    for claim, ok in claims.items()
  ]
  return "\n".join(parts)


def save_roc_figure(workdir: str) -> str | None:
  """Every row's intra-class ROC/PR curve on one figure (from each run's `<run>_scores.npz`)."""
  from mlsup_jax.viz.ood import save_roc_curves

  curves = {}
  for row, run, score in ROWS:
    # Each method's report names its scores file after the run (`detection_protocol.report`).
    path = os.path.join(workdir, run, f"{run}_scores.npz")
    if os.path.exists(path):
      with np.load(path) as saved:
        if score in saved:
          curves[row] = (saved[score], saved["ood"])
  if not curves:
    return None
  return save_roc_curves(os.path.join(workdir, "roc.png"), curves, title="Intra-class OOD")


def run_study(
  configs: Mapping[str, ml_collections.ConfigDict],
  workdir: str,
  inter_class: Sequence[str] = MODALITY_NAMES,
  inter_class_cases: int = 300,
  unseen: Sequence[str] = UNSEEN_TRANSFORMS,
) -> dict:
  """Trains + evaluates each run, evaluates it on inter-class sets, writes the tables.

  Args:
    configs: run name (`tend`, `cvad`, `vae`) → its config.
    workdir: the study folder; each run trains in `workdir/<run>`.
    inter_class: modalities evaluated as inter-class OOD (empty: none).
    inter_class_cases: images generated per modality (split half validation, half test).
    unseen: validation-only transforms for Tables 4.5–4.6 (`pipelines/unseen_transforms.py`;
      empty: none).

  Returns:
    `{"tables", "claims", "markdown", "results", "inter_class"}`.
  """
  unknown = set(configs) - set(RUNS)
  if unknown:
    raise ValueError(f"Unknown study runs {sorted(unknown)}; expected some of {list(RUNS)}.")
  results, inter = {}, {}
  for run, config in configs.items():
    run_dir = os.path.join(workdir, run)
    results[run] = trainer.train_and_evaluate(config, run_dir)
  for modality in inter_class:
    inter[modality] = {
      run: evaluation.evaluate_checkpoint(
        inter_class_config(config, modality, inter_class_cases),
        os.path.join(workdir, run),
        output_dir=os.path.join(workdir, run, f"inter_{modality}"),
      )
      for run, config in configs.items()
    }
  tables = build_tables(results, inter)
  class_names = tuple(next(iter(configs.values())).data.class_names)
  tables["per_class_auroc"] = per_class_auroc(workdir, class_names)
  if unseen:
    tables["unseen_acc"] = unseen_transforms.evaluate_unseen(
      configs, results, workdir, ROWS, names=unseen
    )
  claims = check_claims(tables)
  markdown = render_markdown(tables, claims)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.md"), "w") as f:
      f.write(markdown + "\n")
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(
        {"tables": tables, "claims": claims, "results": results, "inter_class": inter},
        f,
        indent=2,
      )
    save_roc_figure(workdir)
  return {
    "tables": tables,
    "claims": claims,
    "markdown": markdown,
    "results": results,
    "inter_class": inter,
  }


SEED_TABLES = ("intra_class", "inter_class_auroc", "per_class_auroc")


def aggregate_seeds(per_seed: Sequence[dict]) -> dict:
  """`run_study` results, one per seed → tables of per-seed values and claim counts."""
  tables = seed_grid.stack_tables(
    [result["tables"] for result in per_seed],
    [name for name in SEED_TABLES if name in per_seed[0]["tables"]],
  )
  holds = seed_grid.count_holds([result["claims"] for result in per_seed])
  return {"tables": tables, "holds": holds, "seeds": len(per_seed)}


def render_seeds_markdown(summary: dict) -> str:
  """Intra-class AUROC / DIFF, per-class and inter-class AUROC as `mean ± std (each seed)`."""
  tables, n = summary["tables"], summary["seeds"]
  intra = tables["intra_class"]
  parts = [
    f"Mean ± std over {n} seeds (each seed's value in brackets).",
    "",
    "### Intra-class OOD (clean protocol)",
    "",
    _markdown(
      ["method", "AUROC ↑", "DIFF ↑"],
      [
        [row, seed_grid.mean_std_cell(v["auroc"]), seed_grid.mean_std_cell(v["diff"])]
        for row, v in intra.items()
      ],
    ),
  ]
  per_class = tables.get("per_class_auroc", {})
  classes = list(dict.fromkeys(c for v in per_class.values() for c in v))
  if classes:
    parts += [
      "",
      "### Intra-class AUROC per OOD class",
      "",
      _markdown(
        ["method"] + classes,
        [
          [row] + [seed_grid.mean_std_cell(v[c], 2) for c in classes]
          for row, v in per_class.items()
        ],
      ),
    ]
  inter = tables.get("inter_class_auroc", {})
  modalities = sorted({m for v in inter.values() for m in v}, key=list(MODALITY_NAMES).index)
  if modalities:
    parts += [
      "",
      "### Inter-class OOD (AUROC)",
      "",
      _markdown(
        ["method"] + modalities,
        [
          [row] + [seed_grid.mean_std_cell(v[m], 2) for m in modalities]
          for row, v in inter.items()
          if v
        ],
      ),
    ]
  parts += ["", "### The thesis's claims across seeds (intra-class AUROC)", ""]
  parts += [f"- {claim}: holds on {k} / {n} seeds" for claim, k in summary["holds"].items()]
  return "\n".join(parts)


def run_seeds(make_configs, workdir: str, seeds: Sequence[int], **study_options) -> dict:
  """`run_study` once per seed in `workdir/seed_<s>`, then the tables over the seeds.

  Args:
    make_configs: `seed -> {run: config}` (e.g. `with_seed` of each run's config).
    workdir: the study folder.
    seeds: the seeds.
    **study_options: `run_study`'s `inter_class`, `unseen`, ….

  Returns:
    `{"per_seed", "summary", "markdown"}`; `workdir/results.md` and `results.json` hold the
    aggregate.
  """
  per_seed = [
    run_study(make_configs(seed), os.path.join(workdir, f"seed_{seed}"), **study_options)
    for seed in seeds
  ]
  summary = aggregate_seeds(per_seed)
  markdown = render_seeds_markdown(summary)
  seed_grid.write_study(workdir, markdown, {"seeds": list(seeds), **summary})
  return {"per_seed": per_seed, "summary": summary, "markdown": markdown}
