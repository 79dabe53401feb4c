"""`python -m launch.nuclei` on image files: a 16-bit TIFF writes the mask and the overlay; an
empty image says so; a file that is not an image is one clear error naming it."""

import subprocess
import sys

import numpy as np
import tifffile

from mlsup_jax.data.phantoms.nuclei import NucleiPhantomSource


def _run(*args):
  return subprocess.run(
    [sys.executable, "-m", "launch.nuclei", *args], capture_output=True, text=True, check=False
  )


def test_a_16_bit_tiff_gives_a_mask_and_an_overlay(tmp_path):
  case = NucleiPhantomSource(split="test", num_cases=1, image_size=128, nucleus_radius=8)[0]
  image = tmp_path / "field.tif"
  tifffile.imwrite(image, (case["image"] * 65535).astype(np.uint16))
  done = _run(f"--image={image}", f"--out={tmp_path / 'out'}")
  assert done.returncode == 0, done.stderr[-2000:]
  mask = tifffile.imread(tmp_path / "out" / "field_instances.tif")
  assert mask.shape == (128, 128) and mask.max() >= int(case["num_nuclei"]) // 2
  assert (tmp_path / "out" / "field_overlay.png").stat().st_size > 0


def test_an_empty_image_and_a_non_image_file(tmp_path):
  empty = tmp_path / "empty.tif"
  tifffile.imwrite(empty, np.zeros((64, 64, 3), np.uint8))
  done = _run(f"--image={empty}", f"--out={tmp_path / 'out'}", "--method=watershed")
  assert done.returncode == 0 and "no foreground found" in done.stdout
  bad = tmp_path / "notes.png"
  bad.write_text("not an image")
  done = _run(f"--image={bad}", f"--out={tmp_path / 'out'}")
  assert done.returncode != 0 and "notes.png: cannot read image file" in done.stderr
