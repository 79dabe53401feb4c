"""Steatosis (thesis §3.2 without the Mask R-CNN): the H&E phantom, weak droplet labels, tile-wise
inference with bounded memory, the droplet filters and the command."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from mlsup_jax.data.phantoms.steatosis import SteatosisPhantomSource
from mlsup_jax.metrics.instances import instance_report
from mlsup_jax.nuclei.steatosis import droplet_weak_labels, tissue_and_white
from mlsup_jax.nuclei.tiled import droplet_filter, relabel, tile_windows, tiled_instances

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_phantom_is_deterministic_with_exact_instances_inside_tissue():
  source = SteatosisPhantomSource(num_cases=3, image_size=128, droplet_radius=8,
                                  background_fraction=1.0)  # fmt: skip
  a, b = source[0], SteatosisPhantomSource(num_cases=3, image_size=128, droplet_radius=8,
                                           background_fraction=1.0)[0]  # fmt: skip
  np.testing.assert_array_equal(a["image"], b["image"])
  assert a["image"].shape == (128, 128, 3) and 0 <= a["image"].min() <= a["image"].max() <= 1
  assert not np.any(a["label"][a["tissue"] == 0])  # no droplet on the glass
  assert (a["tissue"] == 0).any()  # background_fraction=1: every tile has glass
  ids = np.unique(a["label"])[1:]
  assert len(ids) <= int(a["num_droplets"])  # droplets on the glass edge may be clipped away
  assert (a["cluster"] > 0).any()  # clustered droplets exist
  # Droplets are white, tissue is not.
  white = a["image"].min(-1)
  assert white[a["label"] > 0].mean() > white[(a["label"] == 0) & (a["tissue"] == 1)].mean() + 0.2


def test_weak_labels_find_the_droplets_and_leave_the_glass_alone():
  source = SteatosisPhantomSource(num_cases=4, image_size=256, background_fraction=0.5)
  scores = []
  for i in range(4):
    case = source[i]
    weak = droplet_weak_labels(case["image"], droplet_radius=10.0)
    tissue, _ = tissue_and_white(case["image"])
    assert not np.any(weak[~tissue.astype(bool)])
    scores.append(instance_report(weak, case["label"])["f1"])
  # Weak labels: most droplets found (clumps are the hard part), not all.
  assert np.mean(scores) > 0.65, scores


def test_bad_input():
  with pytest.raises(ValueError, match="RGB"):
    droplet_weak_labels(np.zeros((32, 32)))
  assert not droplet_weak_labels(np.full((32, 32, 3), 0.7, np.float32)).any()  # no contrast


class _CountingImage:
  """An array-like that records the largest window read from it."""

  def __init__(self, array):
    self.array, self.shape, self.largest = array, array.shape, 0

  def __getitem__(self, index):
    window = self.array[index]
    self.largest = max(self.largest, window.shape[0] * window.shape[1])
    return window


def test_tiled_run_equals_one_pass_and_reads_bounded_windows():
  rng = np.random.default_rng(0)
  image = np.zeros((300, 420), np.float32)
  for _ in range(40):  # discs of radius ≤ 8 anywhere, tile borders included
    cy, cx, r = rng.uniform(10, 290), rng.uniform(10, 410), rng.uniform(3, 8)
    yy, xx = np.ogrid[:300, :420]
    image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1.0

  def predict(window):
    return ndimage.label(window > 0.5)[0]

  counting = _CountingImage(image)
  out = np.zeros(image.shape, np.int32)
  props = tiled_instances(counting, predict, out, tile=100, overlap=20)
  whole = predict(image)
  # The same objects, each exactly once, as the one-pass labelling.
  assert len(props) == int(whole.max())
  assert instance_report(out, whole)["f1"] == 1.0
  assert counting.largest <= (100 + 2 * 20) ** 2  # one window at a time, never the image
  cores = [core for _, core in tile_windows(image.shape, 100, 20)]
  covered = np.zeros(image.shape, int)
  for rows, cols in cores:
    covered[rows, cols] += 1
  assert np.all(covered == 1)


def test_droplet_filter_and_relabel():
  props = [
    {"id": 1, "area": 100.0, "perimeter": 40.0, "eccentricity": 0.5},
    {"id": 2, "area": 120.0, "perimeter": 42.0, "eccentricity": 0.6},
    {"id": 3, "area": 110.0, "perimeter": 41.0, "eccentricity": 0.02},
    {"id": 4, "area": 100.0, "perimeter": 10.0, "eccentricity": 0.5},
  ]
  # Averages: area 107.5, perimeter 33.25, eccentricity 0.405. Perimeter range [0.5, 4] × 33.25
  # = [16.6, 133]: 4 (10) is out; eccentricity range [0.2, 1.5] × 0.405 = [0.081, 0.61]: 3
  # (0.02) is out.
  assert droplet_filter(props) == {1, 2}
  out = np.array([[1, 2, 3], [4, 0, 2]], np.int32)
  assert relabel(out, {1, 2}, tile=2) == 2
  np.testing.assert_array_equal(out, [[1, 2, 0], [0, 0, 2]])


@pytest.mark.slow
def test_command_on_a_large_memory_mapped_tiff(tmp_path):
  source = SteatosisPhantomSource(num_cases=4, image_size=256, droplet_radius=10)
  tiles = [(source[i]["image"] * 255).astype(np.uint8) for i in range(4)]
  mosaic = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)
  path = tmp_path / "slide.tif"
  tifffile.imwrite(path, mosaic)  # uncompressed: memory-mapped by the command
  out = tmp_path / "out"
  command = [sys.executable, "-m", "launch.steatosis", f"--image={path}", f"--out={out}",
             "--tile=200", "--overlap=48", "--droplet_radius=10"]  # fmt: skip
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-3000:]
  labels = tifffile.imread(out / "slide_droplets.tif")
  assert labels.shape == (512, 512) and labels.max() > 20
  with open(out / "slide_droplets.csv") as f:
    assert len(list(csv.reader(f))) - 1 == int(labels.max())
  assert (out / "slide_overlay.png").exists()
  assert "droplets" in done.stdout
