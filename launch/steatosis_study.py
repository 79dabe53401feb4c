r"""The steatosis weak-label study on the H&E phantom (no training): how good are the weak labels?

  python -m launch.steatosis_study --workdir=runs/steatosis_study --seeds=3 --tiles=6

Per phantom seed, `--tiles` 512² tiles (the thesis's training crop size) are labelled by
(a) white connected components inside the tissue (no splitting), (b) the §3.1 algorithm adapted
(`nuclei/steatosis.py`: the solidity rule, then clump splitting) and (c) the same splitting every
component (no solidity rule); every labelling is scored against the exact droplet instances on
the whole tile and over clustered droplets (`pipelines/nuclei_study.py`'s metrics, the thesis's
definitions too). Writes `<workdir>/results.md` / `results.json` and an overlay figure.
These weak labels are the row Mask R-CNN must beat in the thesis's Table 3.2.
"""

import json
import os

import numpy as np
from absl import app, flags
from scipy import ndimage

from mlsup_jax.data.phantoms.steatosis import SteatosisPhantomSource
from mlsup_jax.nuclei.steatosis import droplet_weak_labels, tissue_and_white
from mlsup_jax.pipelines import nuclei_study
from mlsup_jax.viz.instances import save_instance_figure

_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Phantom seeds 0 … N−1.")
_TILES = flags.DEFINE_integer("tiles", 6, "Tiles per seed.")
_SIZE = flags.DEFINE_integer("image_size", 512, "Tile side in pixels.")
_RADIUS = flags.DEFINE_float("droplet_radius", 14.0, "Mean droplet radius in pixels.")
flags.mark_flags_as_required(["workdir"])


def components(image):
  tissue, white = tissue_and_white(image)
  return ndimage.label(white & tissue)[0]


def tiles(seed, count, size, radius):
  source = SteatosisPhantomSource(
    split="test", num_cases=count, image_size=size, droplet_radius=radius,
    num_droplets=int(30 * (size / 256) ** 2 * (10 / radius) ** 2), seed=seed,
  )  # fmt: skip
  return [source[i] for i in range(count)]


def main(argv):
  del argv
  os.makedirs(_WORKDIR.value, exist_ok=True)
  methods = {
    "white components (no splitting)": components,
    "§3.1 adapted (solidity rule + splitting)": lambda image: droplet_weak_labels(image),
    "§3.1 splitting every component": lambda image: droplet_weak_labels(
      image, single_solidity=np.inf
    ),
  }
  results, seconds = nuclei_study.run_study(
    range(_SEEDS.value), _TILES.value, _SIZE.value, _RADIUS.value, methods, tiles, "cluster"
  )
  markdown = nuclei_study.render_markdown(
    results, seconds, _SIZE.value, baseline="white components (no splitting)",
    short="white components",
  )  # fmt: skip
  with open(os.path.join(_WORKDIR.value, "results.md"), "w") as f:
    f.write(markdown)
  with open(os.path.join(_WORKDIR.value, "results.json"), "w") as f:
    json.dump({"results": results, "seconds": seconds}, f, indent=2)
  case = tiles(0, 1, _SIZE.value, _RADIUS.value)[0]
  save_instance_figure(
    os.path.join(_WORKDIR.value, "steatosis_example.png"),
    case["image"],
    {
      "exact droplets": case["label"],
      "weak labels (§3.1 adapted)": droplet_weak_labels(case["image"]),
    },
  )
  print(markdown)


if __name__ == "__main__":
  app.run(main)
