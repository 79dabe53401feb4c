r"""The §3.1 study on the nuclei phantom (no training): clump splitting vs the watershed.

  python -m launch.nuclei_study --workdir=runs/nuclei_study --seeds=3 --fields=8

Writes `<workdir>/results.md` / `results.json` (`pipelines/nuclei_study.py`) and an overlay
figure of the first field of seed 0 (`nuclei_example.png`), and prints the tables.
"""

import json
import os

from absl import app, flags

from mlsup_jax.data.phantoms.nuclei import NucleiPhantomSource
from mlsup_jax.pipelines import nuclei_study
from mlsup_jax.viz.instances import save_instance_figure

_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Phantom seeds 0 … N−1.")
_FIELDS = flags.DEFINE_integer("fields", 8, "Test fields per seed.")
_SIZE = flags.DEFINE_integer("image_size", 512, "Field side in pixels.")
_RADIUS = flags.DEFINE_float("nucleus_radius", 16.0, "Mean nucleus radius in pixels.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  os.makedirs(_WORKDIR.value, exist_ok=True)
  results, seconds = nuclei_study.run_study(
    range(_SEEDS.value), _FIELDS.value, _SIZE.value, _RADIUS.value
  )
  markdown = nuclei_study.render_markdown(results, seconds, _SIZE.value)
  with open(os.path.join(_WORKDIR.value, "results.md"), "w") as f:
    f.write(markdown)
  with open(os.path.join(_WORKDIR.value, "results.json"), "w") as f:
    json.dump({"results": results, "seconds_per_image": seconds}, f, indent=2)
  case = NucleiPhantomSource(
    split="test", num_cases=1, image_size=_SIZE.value, nucleus_radius=_RADIUS.value,
    num_nuclei=int(24 * (_SIZE.value / 256) ** 2 * (12 / _RADIUS.value) ** 2),
  )[0]  # fmt: skip
  panels = {"reference": case["label"]}
  panels.update({name: segment(case["image"]) for name, segment in nuclei_study.METHODS.items()})
  save_instance_figure(os.path.join(_WORKDIR.value, "nuclei_example.png"), case["image"], panels)
  print(markdown)


if __name__ == "__main__":
  app.run(main)
