"""Tests of the labelled real-image sources: class folders and pydicom's bundled DICOM files."""

import shutil

import ml_collections
import numpy as np
import pytest
from PIL import Image

from mlsup_jax.data.sources import build_source
from mlsup_jax.data.sources.readers.class_folder import (
  ImageClassFolderSource,
  percentile_normalize,
  resize_image,
)
from mlsup_jax.data.sources.readers.pydicom_examples import PydicomExamplesSource
from mlsup_jax.data.validation import DataError

# ----------------------------------------------------------------------------------------------
# ImageClassFolderSource.


def _png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


@pytest.fixture
def class_root(tmp_path):
  """`normal/` with two 8-bit grey PNGs, `abnormal/` with an RGB PNG and a 16-bit PNG."""
  root = tmp_path / "data"
  _png(root / "normal" / "a.png", np.full((20, 30), 51, np.uint8))
  _png(root / "normal" / "b.png", np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1)))
  rgb = np.zeros((10, 10, 3), np.uint8)
  rgb[..., 0] = 255  # pure red: luma 0.299
  _png(root / "abnormal" / "red.png", rgb)
  _png(root / "abnormal" / "deep.png", np.full((12, 12), 65535, np.uint16))
  (root / "abnormal" / "notes.txt").write_text("not an image")
  (root / ".hidden").mkdir()
  (root / "readme.md").write_text("ignored")
  return root


def test_class_folder_labels_by_sorted_folder_name(class_root):
  source = ImageClassFolderSource(str(class_root), image_size=16)
  assert source.class_names == ("abnormal", "normal")
  assert source.case_ids == ["abnormal/deep", "abnormal/red", "normal/a", "normal/b"]
  np.testing.assert_array_equal(source.class_ids, [0, 0, 1, 1])
  assert len(source) == 4
  for i in range(len(source)):
    example = source[i]
    assert example["image"].shape == (16, 16, 1) and example["image"].dtype == np.float32
    assert 0.0 <= example["image"].min() and example["image"].max() <= 1.0
    assert example["class_id"].shape == () and int(example["class_id"]) == source.class_ids[i]
  # Values: 16-bit full scale → 1, red → its luma, 8-bit 51 → 0.2 (resizing keeps constants).
  np.testing.assert_allclose(source[0]["image"], 1.0, atol=1e-6)
  np.testing.assert_allclose(source[1]["image"], 0.299, atol=2e-3)
  np.testing.assert_allclose(source[2]["image"], 51 / 255, atol=1e-5)
  ramp = source[3]["image"][..., 0]
  assert np.all(np.diff(ramp, axis=1) > 0)  # a horizontal ramp stays a ramp
  with pytest.raises(IndexError):
    source[4]


def test_class_folder_rgb_channels_and_dicom_files(class_root):
  pydicom_data = pytest.importorskip("pydicom.data")
  try:
    ct = pydicom_data.get_testdata_file("CT_small.dcm")
  except Exception:  # Would need a download.
    ct = None
  if ct is None:
    pytest.skip("pydicom's CT_small.dcm is not available offline.")
  shutil.copy(ct, class_root / "normal" / "ct.dcm")
  source = ImageClassFolderSource(str(class_root), image_size=24, channels=3)
  assert source.case_ids[4] == "normal/ct" and source.class_ids[4] == 1
  red = source[1]["image"]
  assert red.shape == (24, 24, 3)
  np.testing.assert_allclose(red[..., 0], 1.0, atol=1e-6)
  np.testing.assert_allclose(red[..., 1:], 0.0, atol=1e-6)
  ct_image = source[4]["image"]
  assert ct_image.shape == (24, 24, 3)
  np.testing.assert_array_equal(ct_image[..., 0], ct_image[..., 2])  # grey replicated
  # Robust min–max: the 1st and 99th percentiles span [0, 1] (before the anti-aliased resize).
  assert ct_image.min() < 0.05 and ct_image.max() > 0.95 and 0.1 < ct_image.mean() < 0.9


def test_class_folder_registered_and_built_from_a_config(class_root):
  config = ml_collections.ConfigDict(
    {"name": "image_class_folder", "root": str(class_root), "image_size": 8}
  )
  source = build_source(config)
  assert isinstance(source, ImageClassFolderSource) and source[2]["image"].shape == (8, 8, 1)


def test_class_folder_errors_name_the_problem(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    ImageClassFolderSource(str(tmp_path / "missing"))
  (tmp_path / "flat").mkdir()
  _png(tmp_path / "flat" / "x.png", np.zeros((4, 4), np.uint8))
  with pytest.raises(DataError, match="no class sub-folders"):
    ImageClassFolderSource(str(tmp_path / "flat"))
  (tmp_path / "flat" / "empty").mkdir()
  with pytest.raises(DataError, match="class folder 'empty' has no images"):
    ImageClassFolderSource(str(tmp_path / "flat"))
  with pytest.raises(ValueError, match="channels must be 1 or 3"):
    ImageClassFolderSource(str(tmp_path / "flat"), channels=2)
  broken = tmp_path / "broken"
  (broken / "a").mkdir(parents=True)
  (broken / "a" / "bad.png").write_bytes(b"not a png")
  source = ImageClassFolderSource(str(broken))
  with pytest.raises(DataError, match="bad.png"):
    source[0]


def test_resize_and_percentile_normalize():
  image = np.random.default_rng(0).uniform(size=(40, 30, 2)).astype(np.float32)
  resized = resize_image(image, 10)
  assert resized.shape == (10, 10, 2) and resized.dtype == np.float32
  # Anti-aliased when shrinking: block averages of noise are much smoother than samples.
  assert resized.std() < 0.6 * image.std()
  values = np.arange(1000, dtype=np.float32)
  values[0], values[-1] = -1e6, 1e6  # outliers do not set the range
  normalised = percentile_normalize(values)
  assert normalised.min() == 0.0 and normalised.max() == 1.0
  assert 0.4 < normalised[500] < 0.6
  np.testing.assert_array_equal(percentile_normalize(np.full(5, 7.0)), 0.0)


# ----------------------------------------------------------------------------------------------
# PydicomExamplesSource.


@pytest.fixture(scope="module")
def pydicom_examples():
  pytest.importorskip("pydicom")
  return PydicomExamplesSource(("MR", "CT", "US"), image_size=32)


def test_pydicom_examples_have_frames_of_each_modality(pydicom_examples):
  counts = pydicom_examples.frame_counts
  print(
    f"pydicom test-file frames per modality: {counts}; skipped: {dict(pydicom_examples.skipped)}"
  )
  assert counts["MR"] >= 1 and counts["CT"] >= 1 and counts["US"] >= 1
  assert np.bincount(pydicom_examples.class_ids, minlength=3).tolist() == [
    counts["MR"],
    counts["CT"],
    counts["US"],
  ]
  assert len(set(pydicom_examples.case_ids)) == len(pydicom_examples)
  maxima = []
  for i in range(len(pydicom_examples)):
    example = pydicom_examples[i]
    image = example["image"]
    assert image.shape == (32, 32, 1) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.05
    assert int(example["class_id"]) == pydicom_examples.class_ids[i]
    maxima.append(image.max())
  # Normalised to [0, 1] before the anti-aliased resize, which narrows the range a little.
  assert np.median(maxima) > 0.9


def test_pydicom_examples_deduplicate_and_cap_frames(pydicom_examples):
  names = pydicom_examples.case_ids
  # MR_small ships in eight encodings of one image: kept once.
  assert sum(n.startswith("MR_small") for n in names) == 1
  assert pydicom_examples.skipped["duplicate"] >= 1
  # The 30-frame ultrasound cine loop gives at most 8 evenly spaced frames.
  loop = [n for n in names if n.startswith("examples_ybr_color.dcm#")]
  assert 1 <= len(loop) <= 8
  capped = PydicomExamplesSource(("US",), image_size=16, max_frames_per_file=2)
  loop = [n for n in capped.case_ids if n.startswith("examples_ybr_color.dcm#")]
  assert loop == ["examples_ybr_color.dcm#0", "examples_ybr_color.dcm#29"]
  assert np.all(capped.class_ids == 0)


def test_pydicom_examples_registered_and_errors():
  source = build_source(
    ml_collections.ConfigDict({"name": "pydicom_examples", "modalities": ["CT"], "image_size": 8})
  )
  assert isinstance(source, PydicomExamplesSource) and np.all(source.class_ids == 0)
  with pytest.raises(ValueError, match="No usable frame of modality XA"):
    PydicomExamplesSource(("CT", "XA"))
  with pytest.raises(ValueError, match="distinct"):
    PydicomExamplesSource(("CT", "CT"))
