r"""Split clumped nuclei in one fluorescence image (thesis §3.1), no training.

  python -m launch.nuclei --image=field.tif --out=runs/nuclei
  python -m launch.nuclei --image=field.png --out=runs/nuclei --channel=0 --nucleus_radius=15
  python -m launch.nuclei --image=field.tif --out=runs/nuclei --method=watershed

Reads a PNG / TIFF / JPEG / BMP image (8- or 16-bit, grey or colour; `--channel` picks the
nuclear stain of a colour image, default 2 = blue / DAPI), and writes
`<out>/<name>_instances.tif` (uint16 instance ids, 0 = background) and `<out>/<name>_overlay.png`
(each nucleus outlined over the image), then prints the count and the time. An image without
foreground writes an all-zero mask and says so. `--nucleus_radius` (pixels) fixes the scale;
by default it is estimated from the image.
"""

import os
import time
from pathlib import Path

import numpy as np
import tifffile
from absl import app, flags

from mlsup_jax.data.sources.readers.images import read_pixels
from mlsup_jax.nuclei.clump_splitting import CURVES, PAIR_SCREENS, SplitSettings, split_nuclei
from mlsup_jax.nuclei.foreground import nuclear_channel
from mlsup_jax.nuclei.watershed import watershed_nuclei
from mlsup_jax.viz.instances import save_instance_figure

_IMAGE = flags.DEFINE_string("image", None, "The fluorescence image file.")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_CHANNEL = flags.DEFINE_integer("channel", 2, "Nuclear channel of a colour image (2 = blue).")
_THRESHOLD = flags.DEFINE_string("threshold", "otsu", "Foreground threshold: otsu or a number.")
_RADIUS = flags.DEFINE_float(
  "nucleus_radius", None, "Nucleus radius in pixels (default: estimated)."
)
_METHOD = flags.DEFINE_enum("method", "split", ["split", "watershed"], "§3.1 or the baseline.")
_CURVE = flags.DEFINE_enum("curve", "geodesic", list(CURVES), "Dividing curves (§3.1).")
_SCREEN = flags.DEFINE_enum(
  "pair_screen", "normals", list(PAIR_SCREENS), "Cut candidates: opposing normals or the code's V."
)
flags.mark_flags_as_required(["image", "out"])


def main(argv):
  del argv
  path = Path(_IMAGE.value)
  pixels = read_pixels(path)  # a clear DataError naming the file if it is not an image
  threshold = _THRESHOLD.value if _THRESHOLD.value == "otsu" else float(_THRESHOLD.value)
  start = time.perf_counter()
  if _METHOD.value == "split":
    settings = SplitSettings(curve=_CURVE.value, pair_screen=_SCREEN.value)
    labels = split_nuclei(pixels, _CHANNEL.value, threshold, _RADIUS.value, settings)
  else:
    labels = watershed_nuclei(pixels, _CHANNEL.value, threshold, _RADIUS.value)
  seconds = time.perf_counter() - start
  os.makedirs(_OUT.value, exist_ok=True)
  stem = path.stem
  mask_path = os.path.join(_OUT.value, f"{stem}_instances.tif")
  tifffile.imwrite(mask_path, labels.astype(np.uint16))
  shown = pixels.astype(np.float32) / (
    np.iinfo(pixels.dtype).max if pixels.dtype.kind == "u" else 1
  )
  if shown.ndim == 2:
    shown = nuclear_channel(pixels, _CHANNEL.value)
  figure = save_instance_figure(
    os.path.join(_OUT.value, f"{stem}_overlay.png"), shown, {_METHOD.value: labels}
  )
  count = int(labels.max())
  if count == 0:
    print(f"{path}: no foreground found (an all-zero mask was written).")
  print(f"{path}: {count} nuclei in {seconds:.2f} s → {mask_path}, {figure}")


if __name__ == "__main__":
  app.run(main)
