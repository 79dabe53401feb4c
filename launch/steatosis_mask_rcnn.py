r"""Thesis Table 3.2 on the steatosis phantom: Mask R-CNN trained on weak labels vs the weak labels.

  python -m launch.steatosis_mask_rcnn --workdir=runs/steatosis_mask_rcnn --size=small --seeds=3
  python -m launch.steatosis_mask_rcnn --workdir=... --size=full --depths=41,50,65   # accelerator

Per seed s (the phantom's training and test tiles and the network's initialisation all drawn
from s): train `configs/mask_rcnn.py:<size>,depth=<d>` on the weak labels of the training tiles
(`weak_droplet_labels`: the §3.1 algorithm adapted), evaluate it on the test tiles against the
exact droplets, and score the weak labels of the same test tiles the same way — the row the
network must beat. Writes `<workdir>/results.md` (mean ± std over seeds and per-seed wins),
`results.json`, each run's folder (metrics, checkpoints, `mask_rcnn_examples.png`) and an
overlay figure of one test tile.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags

from configs import mask_rcnn as mask_rcnn_config
from mlsup_jax.core import trainer
from mlsup_jax.data.sources import build_source
from mlsup_jax.nuclei.steatosis import droplet_weak_labels
from mlsup_jax.pipelines import nuclei_study

METRICS = ("f1", "precision", "recall", "aji", "pq", "clumped/f1", "thesis/ap", "thesis/f1")
WEAK = "weak labels (§3.1 adapted)"


def define_flags() -> None:
  flags.DEFINE_string("workdir", None, "Output folder.")
  flags.DEFINE_string("size", "small", "configs/mask_rcnn.py size: smoke, small, default, full.")
  flags.DEFINE_list("depths", ["41"], "Backbone depths (41, 50, 65).")
  flags.DEFINE_integer("seeds", 3, "Seeds 0 … N−1.")
  flags.DEFINE_integer("steps", 0, "Training steps (0: the config's).")
  flags.mark_flags_as_required(["workdir"])


def seeded_config(size: str, depth: int, seed: int, steps: int = 0):
  """The config of one run: phantom tiles, data order and initialisation from `seed`."""
  arg = f"depth={depth}" if size == "default" else f"{size},depth={depth}"
  config = mask_rcnn_config.get_config(arg)
  with config.unlocked():
    config.seed = seed
    config.data.seed = seed
    config.data.train_source.base.seed = seed
    config.data.eval_source.seed = seed
    config.train.tensorboard = False
    if steps:
      config.train.num_steps = steps
  return config


def weak_label_scores(config) -> dict[str, float]:
  """The weak labels of the config's evaluation tiles, scored like the network's predictions."""
  source = build_source(config.data.eval_source)
  radius = config.data.train_source.droplet_radius
  per_tile = []
  for index in range(len(source)):
    case = source[index]
    per_tile.append(
      nuclei_study.evaluate_field(case, droplet_weak_labels(case["image"], radius), "cluster")
    )
  return nuclei_study.field_means(per_tile)


def run(workdir: str, size: str, depths, seeds, steps: int = 0) -> dict:
  """`{row: {metric: [value per seed]}}` for the weak labels and each depth's Mask R-CNN."""
  results: dict[str, dict[str, list[float]]] = {}
  for seed in seeds:
    # The test tiles depend on the seed only: the weak labels are scored once per seed.
    for key, value in weak_label_scores(seeded_config(size, int(depths[0]), seed)).items():
      results.setdefault(WEAK, {}).setdefault(key, []).append(value)
    for depth in depths:
      config = seeded_config(size, int(depth), seed, steps)
      scores = trainer.train_and_evaluate(
        config, os.path.join(workdir, f"resnet{depth}_seed{seed}")
      )
      row = f"Mask R-CNN ResNet-{depth} (trained on the weak labels)"
      for key, value in scores.items():
        results.setdefault(row, {}).setdefault(key, []).append(float(value))
  return results


def render(results: dict, size: str, seeds) -> str:
  """Markdown: mean ± std per row and metric, and per-seed wins of each network over the weak
  labels on F1."""
  lines = [
    f"Steatosis phantom, `configs/mask_rcnn.py:{size}`, seeds {list(seeds)} "
    "(exact droplets as reference; means over test tiles, then mean ± std over seeds)",
    "",
    "| row | " + " | ".join(METRICS) + " |",
    "|---|" + "---|" * len(METRICS),
  ]
  for row, values in results.items():
    cells = [
      f"{np.mean(values[m]):.3f} ± {np.std(values[m]):.3f}" if m in values else "—" for m in METRICS
    ]
    lines.append(f"| {row} | " + " | ".join(cells) + " |")
  lines.append("")
  weak = np.asarray(results[WEAK]["f1"])
  for row, values in results.items():
    if row != WEAK:
      wins = int(np.sum(np.asarray(values["f1"]) > weak))
      lines.append(f"- {row}: F1 above the weak labels on {wins} / {len(weak)} seeds.")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  cfg = flags.FLAGS
  os.makedirs(cfg.workdir, exist_ok=True)
  seeds = list(range(cfg.seeds))
  results = run(cfg.workdir, cfg.size, cfg.depths, seeds, cfg.steps)
  markdown = render(results, cfg.size, seeds)
  with open(os.path.join(cfg.workdir, "results.md"), "w") as f:
    f.write(markdown)
  with open(os.path.join(cfg.workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  print(markdown)


if __name__ == "__main__":
  define_flags()
  app.run(main)
