"""The spurious-feature study: ERM, DFR and CFR on one frozen encoder (configs/cfr.py).

`run_spurious_study(config, workdir)`:

1. the encoder — pre-trained by the library's trainer in `<workdir>/encoder` (`config.encoder`,
   resumed / reused), or a user's weights (`config.encoder_weights`);
2. embeddings of the train / val / test sources, computed once with the encoder frozen and cached
   in `<workdir>/embeddings`;
3. on the standardised training features: the ERM **linear probe** (L2 logistic regression),
   **ERM** (projection + classifier, cross-entropy), **DFR** (group-balanced L1 logistic
   regression on the validation split — the one method that reads group labels), and **CFR**
   (calibration set from the ERM model's training-split predictions, then
   `projection_head.train_cfr`); no checkpoint is selected: every head is its last epoch;
4. the test split's WILDS group metrics (`metrics/groups.py`, adjusted with the training split's
   group counts) per method, written to `results.json`, `results.md` and `groups.png`.

Groups are read from the data for reporting and for DFR only.
"""

from __future__ import annotations

import copy
import json
import os

import ml_collections
import numpy as np
from absl import logging
from sklearn.linear_model import LogisticRegression

from mlsup_jax.core import trainer
from mlsup_jax.data.sources import build_source
from mlsup_jax.metrics.groups import group_report
from mlsup_jax.spurious import projection_head
from mlsup_jax.spurious.calibration_set import build_calibration_set
from mlsup_jax.spurious.dfr import fit_dfr
from mlsup_jax.spurious.frozen_encoder import FrozenEncoder
from mlsup_jax.viz.groups import save_group_accuracies

METHODS = ("ERM (linear probe)", "ERM", "DFR", "CFR")
METRICS = ("worst_group_accuracy", "adjusted_average_accuracy", "average_accuracy")


def _log(message: str, *args) -> None:
  logging.info("[cfr] " + message, *args)


def seeded(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  """`config` with study seed `seed` (encoder initialisation and training, heads, draws); the
  phantom splits stay fixed."""
  config = copy.deepcopy(config)
  with config.unlocked():
    config.seed = int(seed)
    config.encoder.seed = int(seed)
    config.encoder.data.seed = int(seed)
  return config


def load_encoder(config: ml_collections.ConfigDict, workdir: str) -> FrozenEncoder:
  """The frozen encoder: the user's weights, or the one pre-trained in `<workdir>/encoder`."""
  if config.encoder_weights:
    shape = tuple(build_source(config.data.train)[0]["image"].shape)
    return FrozenEncoder.from_file(config.encoder.model, config.encoder_weights, shape)
  encoder_dir = os.path.join(workdir, "encoder")
  if not os.path.exists(os.path.join(encoder_dir, "eval_results.json")):
    _log("pre-training the encoder in %s", encoder_dir)
    trainer.train_and_evaluate(config.encoder, encoder_dir)
  return FrozenEncoder.from_run(config.encoder, encoder_dir)


def _check_split(name: str, embedded: dict, num_classes: int, num_groups: int) -> None:
  labels, groups = embedded["labels"], embedded["groups"]
  if len(np.unique(labels)) < 2:
    raise ValueError(f"The {name} split has a single class ({np.unique(labels).tolist()}).")
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"The {name} split has labels outside [0, {num_classes}).")
  if name != "train" and np.any(np.bincount(groups[groups >= 0], minlength=num_groups) == 0):
    counts = np.bincount(groups[groups >= 0], minlength=num_groups).tolist()
    raise ValueError(f"The {name} split has an empty group (group counts {counts}).")


def run_spurious_study(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the study (module docstring); returns `{"methods": {name: report}, …}`."""
  os.makedirs(workdir, exist_ok=True)
  encoder = load_encoder(config, workdir)
  num_classes = int(config.data.num_classes)
  names = tuple(config.data.group_names)
  embedded = {}
  for split in ("train", "val", "test"):
    source_config = config.data[split]
    embedded[split] = encoder.embed(
      build_source(source_config),
      cache_dir=os.path.join(workdir, "embeddings"),
      source_config=source_config,
      batch_size=int(config.data.embed_batch_size),
    )
    _check_split(split, embedded[split], num_classes, len(names))
  train_counts = np.bincount(embedded["train"]["groups"], minlength=len(names))
  standardise = projection_head.Standardiser.fit(embedded["train"]["features"])
  x = {k: standardise(v["features"]) for k, v in embedded.items()}
  y = {k: v["labels"] for k, v in embedded.items()}
  seed = int(config.seed)
  predictions, notes = {}, {}

  _log("ERM linear probe")
  probe = LogisticRegression(C=float(config.probe.C), max_iter=2000).fit(x["train"], y["train"])
  predictions["ERM (linear probe)"] = probe.predict(x["test"]).astype(np.int32)

  _log("ERM: projection + classifier, %d epochs", config.erm.epochs)
  erm = projection_head.train_erm(x["train"], y["train"], config.erm, seed, num_classes)
  predictions["ERM"] = projection_head.predict(erm, config.erm, x["test"], num_classes)

  _log("DFR on the validation split (group labels)")
  dfr = fit_dfr(
    embedded["val"]["features"],
    y["val"],
    embedded["val"]["groups"],
    len(names),
    c_grid=tuple(config.dfr.c_grid),
    retrains=int(config.dfr.retrains),
    tune_repeats=int(config.dfr.tune_repeats),
    seed=seed,
  )
  predictions["DFR"] = dfr.predict(embedded["test"]["features"])
  notes["dfr_c"] = dfr.c

  _log("CFR: calibration set from the ERM model's training predictions")
  train_predictions = projection_head.predict(erm, config.erm, x["train"], num_classes)
  calibration = build_calibration_set(
    x["train"],
    y["train"],
    train_predictions,
    correct_per_class=int(config.cfr.correct_per_class),
    negatives=int(config.cfr.negatives),
    negative_mode=str(config.cfr.negative_mode),
    seed=seed,
    num_classes=num_classes,
  )
  notes["calibration_anchors"] = int(len(calibration.anchors))
  notes["calibration_mistakes"] = calibration.num_mistakes
  if config.cfr.init not in ("erm", "fresh"):
    raise ValueError(f"cfr.init must be 'erm' or 'fresh', got {config.cfr.init!r}.")
  cfr = projection_head.train_cfr(
    x["train"],
    y["train"],
    calibration,
    config.cfr,
    seed,
    num_classes,
    init_params=erm if config.cfr.init == "erm" else None,
  )
  predictions["CFR"] = projection_head.predict(cfr, config.cfr, x["test"], num_classes)

  reports = {
    method: group_report(
      predictions[method], y["test"], embedded["test"]["groups"], train_counts, names
    )
    for method in METHODS
  }
  result = {
    "methods": reports,
    "notes": notes,
    "train_group_counts": train_counts.tolist(),
    "group_names": list(names),
    "encoder": encoder.fingerprint,
  }
  markdown = render_markdown(result)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown)
  save_group_accuracies(
    {m: reports[m] for m in METHODS}, names, os.path.join(workdir, "groups.png")
  )
  return {**result, "markdown": markdown}


def render_markdown(result: dict) -> str:
  """One run's table: the three summary metrics and every group's accuracy per method."""
  names = result["group_names"]
  header = "| method | worst-group | adjusted avg | avg | " + " | ".join(names) + " |"
  lines = [header, "|" + "---|" * (4 + len(names))]
  for method, report in result["methods"].items():
    cells = [f"{report[m]:.3f}" for m in METRICS] + [
      f"{report[f'accuracy/{n}']:.3f}" for n in names
    ]
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  notes = result["notes"]
  lines.append("")
  lines.append(
    f"Calibration set: {notes['calibration_anchors']} anchors, of which "
    f"{notes['calibration_mistakes']} ERM mistakes; DFR's C = {notes['dfr_c']}. Training group "
    f"counts: {result['train_group_counts']}."
  )
  return "\n".join(lines) + "\n"


def aggregate_seeds(per_seed: list[dict]) -> dict:
  """`{method: {metric: [per seed]}}` plus the claims and how many seeds each holds on."""
  methods = list(per_seed[0]["methods"])
  names = per_seed[0]["group_names"]
  keys = list(METRICS) + [f"accuracy/{n}" for n in names]
  values = {m: {k: [run["methods"][m][k] for run in per_seed] for k in keys} for m in methods}
  wga = {m: np.asarray(values[m]["worst_group_accuracy"]) for m in methods}
  gap = wga["DFR"] - wga["ERM"]
  closed = np.where(gap > 0, (wga["CFR"] - wga["ERM"]) / np.where(gap > 0, gap, 1), np.nan)
  claims = {
    "CFR > ERM on worst-group accuracy": int(np.sum(wga["CFR"] > wga["ERM"])),
    "DFR > ERM on worst-group accuracy": int(np.sum(wga["DFR"] > wga["ERM"])),
    "CFR ≥ DFR on worst-group accuracy": int(np.sum(wga["CFR"] >= wga["DFR"])),
  }
  return {
    "values": values,
    "claims": claims,
    "gap_closed": closed.tolist(),
    "group_names": names,
    "seeds": len(per_seed),
    "notes": [run["notes"] for run in per_seed],
  }


def render_seeds_markdown(summary: dict, seeds: list[int]) -> str:
  """Mean ± std over seeds (each seed's worst-group accuracy in brackets) and the claims."""
  names = summary["group_names"]
  lines = [
    f"Mean ± std over {len(seeds)} seeds {seeds} (test split; worst-group accuracy of each seed "
    "in brackets).",
    "",
    "| method | worst-group | adjusted avg | avg | " + " | ".join(names) + " |",
    "|" + "---|" * (4 + len(names)),
  ]
  for method, values in summary["values"].items():
    wga = values["worst_group_accuracy"]
    cells = [
      f"{np.mean(wga):.3f} ± {np.std(wga):.3f} (" + " / ".join(f"{v:.3f}" for v in wga) + ")"
    ]
    for key in list(METRICS[1:]) + [f"accuracy/{n}" for n in names]:
      cells.append(f"{np.mean(values[key]):.3f} ± {np.std(values[key]):.3f}")
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  lines += ["", "Claims (seeds on which they hold):", ""]
  for claim, count in summary["claims"].items():
    lines.append(f"- {claim}: {count} / {summary['seeds']}")
  closed = [c for c in summary["gap_closed"] if c == c]
  if closed:
    lines.append(
      "- share of the ERM → DFR worst-group gap that CFR closes: "
      + " / ".join(f"{c:.2f}" for c in summary["gap_closed"])
    )
  return "\n".join(lines) + "\n"
