"""`launch.otdd` end to end on two tiny class folders, and the labelled-image loader's errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mlsup_jax.data.validation import DataError
from mlsup_jax.ot.labelled_images import load_labelled_images

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_folder(root, brightness: float, seed: int) -> None:
  """3 classes × 5 grey 8×8 PNGs: class c is a bright stripe in row block c, plus noise."""
  rng = np.random.default_rng(seed)
  for c, name in enumerate(("cyst", "normal", "tumour")):
    (root / name).mkdir(parents=True)
    for i in range(5):
      image = 40 + 20 * rng.random((8, 8))
      image[2 * c : 2 * c + 3] += 150
      image = np.clip(image + brightness, 0, 255).astype(np.uint8)
      Image.fromarray(image).save(root / name / f"{i}.png")


def _one_device_env() -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = " ".join(
    f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f
  )
  return env


def test_launch_prints_and_writes_the_distance(tmp_path):
  _write_folder(tmp_path / "a", brightness=0.0, seed=0)
  _write_folder(tmp_path / "b", brightness=40.0, seed=1)
  out = tmp_path / "out" / "otdd.json"
  command = [
    sys.executable, "-m", "launch.otdd", f"--dataset_a={tmp_path / 'a'}",
    f"--dataset_b={tmp_path / 'b'}", f"--out={out}", "--image_size=8", "--rounds=2",
  ]  # fmt: skip
  run = subprocess.run(command, cwd=REPO, env=_one_device_env(), capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  summary = json.loads(out.read_text())
  assert f"OTDD({tmp_path / 'a'}, {tmp_path / 'b'}) = " in run.stdout
  assert f"{summary['distance_mean']:.6g}" in run.stdout
  assert summary["a"]["classes"] == ["cyst", "normal", "tumour"] and summary["b"]["n"] == 15
  assert summary["converged"] and len(summary["rounds"]) == 2
  # A brightness shift of 40/255 on all 64 pixels: d ≥ the mean shift √64 · 40/255 ≈ 1.25.
  assert summary["distance_mean"] > 1.0
  # No subsampling (15 < max_samples): both rounds see the same data.
  assert summary["distance_std"] == pytest.approx(0.0, abs=1e-6)
  first = summary["rounds"][0]
  assert np.asarray(first["label_costs"]).shape == (3, 3) and first["settings"]["epsilon"] == 0.1


def test_loader_reads_folders_and_rejects_missing_tfds(tmp_path):
  _write_folder(tmp_path / "a", brightness=0.0, seed=0)
  images, labels, names = load_labelled_images(str(tmp_path / "a"), image_size=4)
  assert images.shape == (15, 4, 4, 1) and names == ("cyst", "normal", "tumour")
  np.testing.assert_array_equal(np.bincount(labels), [5, 5, 5])
  subset, _, _ = load_labelled_images(str(tmp_path / "a"), image_size=4, max_examples=6)
  assert subset.shape[0] == 6
  with pytest.raises(DataError, match="'no_such_dataset_xyz'"):
    load_labelled_images("tfds:no_such_dataset_xyz")
  with pytest.raises(DataError, match="'mnist' is not prepared in .*nothing is downloaded"):
    load_labelled_images("tfds:mnist", data_dir=str(tmp_path / "tfds"))


def test_launch_reads_prepared_tfds_datasets(tfds_dir, tmp_path):
  """`tfds:<name>` inputs (prepared array_record, read without TensorFlow): `mlsup_tiny` has
  labels 0, 1, 2 in train and 0, 1 in test, so train+test holds classes 0 and 1 twice each and
  class 2 once (below `min_class_count`, dropped). A dataset against itself: distance 0."""
  images, labels, names = load_labelled_images(
    "tfds:mlsup_tiny", image_size=4, split="train+test", data_dir=tfds_dir
  )
  assert images.shape == (5, 4, 4, 1) and names is None
  np.testing.assert_array_equal(np.bincount(labels), [2, 2, 1])
  out = tmp_path / "otdd.json"
  command = [
    sys.executable, "-m", "launch.otdd", "--dataset_a=tfds:mlsup_tiny",
    "--dataset_b=tfds:mlsup_tiny", "--split_a=train+test", "--split_b=train+test",
    f"--tfds_data_dir={tfds_dir}", f"--out={out}", "--image_size=4",
  ]  # fmt: skip
  run = subprocess.run(command, cwd=REPO, env=_one_device_env(), capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  summary = json.loads(out.read_text())
  assert summary["a"]["n"] == 5 and summary["a"]["split"] == "train+test"
  assert summary["converged"]
  assert summary["distance_mean"] == pytest.approx(0.0, abs=1e-3)
