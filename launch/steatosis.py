r"""Weak fat-droplet instances over a large H&E image, tile by tile (thesis §3.2, no training).

  python -m launch.steatosis --image=slide_region.tif --out=runs/steatosis
  python -m launch.steatosis --image=tile.png --out=runs/steatosis --droplet_radius=12

Reads a PNG / TIFF / JPEG RGB image — an uncompressed TIFF is memory-mapped, so a region far
larger than memory works — and runs the §3.1 algorithm adapted to droplets
(`nuclei/steatosis.py`) window by window (`nuclei/tiled.py`: `--tile` core, `--overlap` margin
larger than the biggest droplet; one window in memory at a time), then the thesis's droplet
filters (size, perimeter and eccentricity within [0.001, 6], [0.5, 4], [0.2, 1.5] × the average
droplet). Writes `<out>/<name>_droplets.tif` (uint32 instance ids, memory-mapped),
`<out>/<name>_droplets.csv` (one row per droplet) and `<out>/<name>_overlay.png` (the image,
downsampled to ≤ 2048 px, with the droplets outlined), and prints the count and the time.
Without `--model` these are the weak labels a Mask R-CNN is trained on (§3.2); with
`--model=<run folder>` (a `launch.train --config=configs/mask_rcnn.py` run) the trained
Mask R-CNN segments each window instead, then the same filters apply:

  python -m launch.steatosis --image=slide_region.tif --out=runs/steatosis --model=runs/mask_rcnn
"""

import csv
import time
from pathlib import Path

import numpy as np
import tifffile
from absl import app, flags

from mlsup_jax.data.sources.readers.images import read_pixels
from mlsup_jax.nuclei.steatosis import droplet_weak_labels
from mlsup_jax.nuclei.tiled import droplet_filter, relabel, tiled_instances
from mlsup_jax.viz.instances import save_instance_figure

_IMAGE = flags.DEFINE_string("image", None, "The H&E image file (RGB).")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_RADIUS = flags.DEFINE_float(
  "droplet_radius", None, "Droplet radius in pixels (default: per tile)."
)
_TILE = flags.DEFINE_integer("tile", 1024, "Core side of a window in pixels.")
_OVERLAP = flags.DEFINE_integer("overlap", 96, "Window margin in pixels (> the largest droplet).")
_MODEL = flags.DEFINE_string(
  "model", None, "A trained Mask R-CNN run folder (default: the weak-label algorithm)."
)
flags.mark_flags_as_required(["image", "out"])


def open_rgb(path: str):
  """A lazily sliced `[H, W, 3]` array: a memory map for uncompressed TIFF, else the pixels."""
  if path.lower().endswith((".tif", ".tiff")):
    try:
      image = tifffile.memmap(path, mode="r")
    except ValueError:  # compressed or tiled: read it whole
      image = tifffile.imread(path)
  else:
    image = read_pixels(path)
  if image.ndim != 3 or image.shape[-1] < 3:
    raise ValueError(f"{path}: an H&E image must be RGB [H, W, 3], got shape {image.shape}.")
  return image


def main(argv):
  del argv
  start = time.perf_counter()
  image = open_rgb(_IMAGE.value)
  scale = 255.0 if image.dtype == np.uint8 else (65535.0 if image.dtype == np.uint16 else 1.0)
  out_dir = Path(_OUT.value)
  out_dir.mkdir(parents=True, exist_ok=True)
  name = Path(_IMAGE.value).stem
  labels_path = str(out_dir / f"{name}_droplets.tif")
  out = tifffile.memmap(labels_path, shape=image.shape[:2], dtype=np.uint32)

  if _MODEL.value:
    from mlsup_jax.methods.mask_rcnn import load_trained

    network = load_trained(_MODEL.value, window=_TILE.value + 2 * _OVERLAP.value)

    def predict(window):
      return network(window[..., :3] / scale)
  else:

    def predict(window):
      return droplet_weak_labels(window[..., :3] / scale, droplet_radius=_RADIUS.value)

  def progress(done, total):
    print(f"\rwindow {done}/{total}", end="", flush=True)

  props = tiled_instances(image, predict, out, _TILE.value, _OVERLAP.value, progress)
  print()
  keep = droplet_filter(props)
  count = relabel(out, keep)
  out.flush()
  with open(out_dir / f"{name}_droplets.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["row", "col", "area", "perimeter", "eccentricity"])
    for p in props:
      if p["id"] in keep:
        writer.writerow([f"{p['centroid'][0]:.1f}", f"{p['centroid'][1]:.1f}", p["area"],
                         f"{p['perimeter']:.1f}", f"{p['eccentricity']:.3f}"])  # fmt: skip
  step = max(1, int(np.ceil(max(image.shape[:2]) / 2048)))
  preview = np.asarray(image[::step, ::step, :3], np.float32) / scale
  save_instance_figure(
    str(out_dir / f"{name}_overlay.png"), preview, {name: np.asarray(out[::step, ::step])}
  )
  del out
  seconds = time.perf_counter() - start
  print(f"{count} droplets ({len(props) - count} filtered out) in {seconds:.1f} s → {labels_path}")


if __name__ == "__main__":
  app.run(main)
