"""Tests of mlsup_jax.data.sources on small files written into tmp_path."""

from __future__ import annotations

import json
import shutil
import sys

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from mlsup_jax.data.sources.readers.dicom import DicomFolderSource
from mlsup_jax.data.sources.readers.images import ImageFolderSource
from mlsup_jax.data.sources.readers.nifti import NiftiFolderSource, NnUNetRawSource
from mlsup_jax.data.sources.readers.tfds import TfdsSource
from mlsup_jax.data.validation import DataError

# ----------------------------------------------------------------------------------------------
# Writers.


def _png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def _nifti(path, array, zooms=(1.0, 1.0, 1.0)):
  path.parent.mkdir(parents=True, exist_ok=True)
  image = nib.Nifti1Image(array, np.diag([*zooms, 1.0]))
  image.header.set_zooms(tuple(zooms) + (1.0,) * (array.ndim - 3))
  nib.save(image, path)


def _dicom(path, stored, *, slope=None, intercept=None, frames=1, pixel_data=True):
  """A minimal valid CT image (signed 16-bit, explicit VR little endian)."""
  from pydicom.dataset import Dataset, FileMetaDataset
  from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = CTImageStorage
  meta.MediaStorageSOPInstanceUID = generate_uid()
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  ds = Dataset()
  ds.file_meta = meta
  ds.SOPClassUID = CTImageStorage
  ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
  ds.Modality = "CT"
  ds.PatientID = "test"
  ds.Rows, ds.Columns = stored.shape[-2:]
  if frames > 1:
    ds.NumberOfFrames = frames
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = "MONOCHROME2"
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
  if slope is not None:
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
  if pixel_data:
    ds.PixelData = stored.astype("<i2").tobytes()
  path.parent.mkdir(parents=True, exist_ok=True)
  ds.save_as(path, enforce_file_format=True)


def _raises(match_file, call):
  """Asserts `call()` raises DataError whose message names `match_file`; returns the message."""
  with pytest.raises(DataError) as info:
    call()
  assert str(match_file) in str(info.value), str(info.value)
  return str(info.value)


# ----------------------------------------------------------------------------------------------
# ImageFolderSource.


def test_image_folder_png_with_labels(tmp_path):
  gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
  rgb = np.zeros((3, 4, 3), np.uint8)
  rgb[..., 0] = 255
  _png(tmp_path / "images" / "a.png", gray)
  _png(tmp_path / "images" / "b.png", rgb)
  _png(tmp_path / "labels" / "a.png", (gray > 100).astype(np.uint8))
  palette_mask = Image.new("P", (4, 3))  # A VOC-style palette mask: indices are the classes.
  palette_mask.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
  palette_mask.putdata([2] * 12)
  palette_mask.save(tmp_path / "labels" / "b.png")
  source = ImageFolderSource(str(tmp_path))
  assert len(source) == 2 and source.case_ids == ["a", "b"]
  assert "ImageFolderSource" in repr(source) and "2 cases" in repr(source)
  a, b = source[0], source[1]
  assert set(a) == {"image", "label"}
  assert a["image"].shape == (3, 4, 1) and a["image"].dtype == np.float32
  np.testing.assert_allclose(a["image"][..., 0], gray / 255, rtol=1e-6)
  assert a["label"].dtype == np.int32
  np.testing.assert_array_equal(a["label"], gray > 100)
  np.testing.assert_allclose(b["image"], 0.299, rtol=1e-5)  # Luminance of pure red.
  np.testing.assert_array_equal(b["label"], 2)
  assert source[-1]["image"].shape == (3, 4, 1)
  with pytest.raises(IndexError):
    source[2]
  colour = ImageFolderSource(str(tmp_path), grayscale=False)[1]["image"]
  np.testing.assert_allclose(colour[0, 0], [1.0, 0.0, 0.0])


def test_image_folder_16bit_png_and_tiff_without_labels(tmp_path):
  values = np.array([[0, 1, 40000], [65535, 300, 7]], np.uint16)
  _png(tmp_path / "images" / "p16.png", values)
  tifffile.imwrite(tmp_path / "images" / "t16.tif", values)
  tifffile.imwrite(tmp_path / "images" / "rgb.tiff", np.stack([values] * 3, axis=-1))
  raw = ImageFolderSource(str(tmp_path), scale=1.0)
  assert raw.case_ids == ["p16", "rgb", "t16"] and not raw.has_labels
  for i in range(3):
    example = raw[i]
    assert set(example) == {"image"}
    assert example["image"].shape == (2, 3, 1)
    np.testing.assert_allclose(example["image"][..., 0], values, rtol=1e-5)
  auto = ImageFolderSource(str(tmp_path), scale=None)[0]["image"][..., 0]
  np.testing.assert_allclose(auto, values / 65535, rtol=1e-6)


def test_image_folder_through_registry_and_grain(tmp_path):
  import grain
  import ml_collections

  from mlsup_jax.data.sources import DATASETS, build_source

  _png(tmp_path / "images" / "a.png", np.ones((4, 4), np.uint8))
  assert DATASETS.get("image_folder") is ImageFolderSource
  config = ml_collections.ConfigDict({"name": "image_folder", "root": str(tmp_path)})
  source = build_source(config)
  assert grain.MapDataset.source(source)[0]["image"].shape == (4, 4, 1)


def test_image_folder_missing_root(tmp_path):
  _raises(tmp_path / "nope", lambda: ImageFolderSource(str(tmp_path / "nope")))


def test_image_folder_no_images(tmp_path):
  (tmp_path / "images").mkdir()
  (tmp_path / "images" / "notes.txt").write_text("not an image")
  message = _raises(tmp_path / "images", lambda: ImageFolderSource(str(tmp_path)))
  assert "no image files" in message


def test_image_folder_corrupt_file(tmp_path):
  _png(tmp_path / "images" / "good.png", np.ones((4, 4), np.uint8))
  (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG but not really")
  source = ImageFolderSource(str(tmp_path))
  _raises("broken.png", lambda: source[0])


def test_image_folder_missing_label(tmp_path):
  _png(tmp_path / "images" / "a.png", np.ones((4, 4), np.uint8))
  _png(tmp_path / "images" / "b.png", np.ones((4, 4), np.uint8))
  _png(tmp_path / "labels" / "a.png", np.ones((4, 4), np.uint8))
  _raises("b.png", lambda: ImageFolderSource(str(tmp_path)))


def test_image_folder_label_shape_mismatch(tmp_path):
  _png(tmp_path / "images" / "a.png", np.ones((4, 4), np.uint8))
  _png(tmp_path / "labels" / "a.png", np.ones((4, 5), np.uint8))
  message = _raises(tmp_path / "labels" / "a.png", lambda: ImageFolderSource(str(tmp_path))[0])
  assert "(4, 5)" in message and "(4, 4)" in message


def test_image_folder_nan_pixels(tmp_path):
  image = np.ones((4, 4), np.float32)
  image[1, 2] = np.nan
  (tmp_path / "images").mkdir()
  tifffile.imwrite(tmp_path / "images" / "nan.tif", image)
  message = _raises("nan.tif", lambda: ImageFolderSource(str(tmp_path), scale=1.0)[0])
  assert "NaN/Inf" in message


# ----------------------------------------------------------------------------------------------
# NiftiFolderSource.


def test_nifti_folder_volumes_channels_and_spacing(tmp_path):
  rng = np.random.default_rng(0)
  volume = rng.normal(size=(5, 6, 3)).astype(np.float32)
  two_channel = rng.normal(size=(5, 6, 3, 2)).astype(np.float32)
  label = (volume > 0).astype(np.uint8)
  _nifti(tmp_path / "images" / "a.nii.gz", volume, zooms=(0.5, 0.8, 3.0))
  _nifti(tmp_path / "images" / "b.nii", two_channel, zooms=(1.0, 1.0, 2.5))
  _nifti(tmp_path / "labels" / "a.nii.gz", label)
  _nifti(tmp_path / "labels" / "b.nii.gz", np.zeros((5, 6, 3), np.int16))
  source = NiftiFolderSource(str(tmp_path))
  assert source.case_ids == ["a", "b"] and "NiftiFolderSource" in repr(source)
  a, b = source[0], source[1]
  assert a["image"].shape == (5, 6, 3, 1) and a["image"].dtype == np.float32
  np.testing.assert_allclose(a["image"][..., 0], volume)
  assert a["label"].shape == (5, 6, 3) and a["label"].dtype == np.int32
  np.testing.assert_array_equal(a["label"], label)
  assert b["image"].shape == (5, 6, 3, 2)
  np.testing.assert_allclose(b["image"], two_channel)
  np.testing.assert_allclose(source.spacing(0), (0.5, 0.8, 3.0), rtol=1e-6)
  np.testing.assert_allclose(source.spacing(1), (1.0, 1.0, 2.5), rtol=1e-6)
  unlabelled = NiftiFolderSource(str(tmp_path), label_dir="none")
  assert set(unlabelled[0]) == {"image"}


def test_nifti_corrupt_file(tmp_path):
  _nifti(tmp_path / "images" / "ok.nii.gz", np.zeros((2, 2, 2), np.float32))
  (tmp_path / "images" / "bad.nii.gz").write_bytes(b"\x1f\x8b garbage")
  source = NiftiFolderSource(str(tmp_path))
  assert source.case_ids == ["bad", "ok"]
  _raises("bad.nii.gz", lambda: source[0])


def test_nifti_shape_mismatch_and_nan(tmp_path):
  image = np.zeros((4, 4, 2), np.float32)
  image[0, 0, 0] = np.inf
  _nifti(tmp_path / "images" / "a.nii.gz", np.zeros((4, 4, 2), np.float32))
  _nifti(tmp_path / "labels" / "a.nii.gz", np.zeros((4, 4, 3), np.uint8))
  _nifti(tmp_path / "images" / "inf.nii.gz", image)
  _nifti(tmp_path / "labels" / "inf.nii.gz", np.zeros((4, 4, 2), np.uint8))
  source = NiftiFolderSource(str(tmp_path))
  _raises(tmp_path / "labels" / "a.nii.gz", lambda: source[0])
  assert "NaN/Inf" in _raises("inf.nii.gz", lambda: source[1])


# ----------------------------------------------------------------------------------------------
# DicomFolderSource.


def test_dicom_folder_rescales_to_hu(tmp_path):
  stored = np.arange(20, dtype=np.int16).reshape(4, 5) * 10 - 50
  _dicom(tmp_path / "series" / "slice1.dcm", stored, slope="2", intercept="-1024")
  _dicom(tmp_path / "series" / "1.2.840.99", stored)  # No extension, no rescale tags.
  (tmp_path / "series" / "readme.txt").write_text("not dicom")
  source = DicomFolderSource(str(tmp_path))
  assert source.case_ids == ["series/1.2.840.99", "series/slice1"]
  assert "DicomFolderSource" in repr(source)
  plain, ct = source[0], source[1]
  assert set(ct) == {"image"}
  assert ct["image"].shape == (4, 5, 1) and ct["image"].dtype == np.float32
  np.testing.assert_allclose(ct["image"][..., 0], stored * 2.0 - 1024)
  np.testing.assert_allclose(plain["image"][..., 0], stored)


def test_dicom_folder_with_labels(tmp_path):
  _dicom(tmp_path / "dcm" / "a.dcm", np.zeros((4, 5), np.int16), slope="1", intercept="0")
  _png(tmp_path / "masks" / "dcm" / "a.png", np.eye(4, 5, dtype=np.uint8))
  source = DicomFolderSource(str(tmp_path), label_dir="masks")
  assert source.case_ids == ["dcm/a"]
  np.testing.assert_array_equal(source[0]["label"], np.eye(4, 5))
  assert source[0]["label"].dtype == np.int32


def test_dicom_pydicom_bundled_ct(tmp_path):
  pydicom = pytest.importorskip("pydicom")
  from pydicom.data import get_testdata_file

  path = get_testdata_file("CT_small.dcm")
  if path is None:
    pytest.skip("pydicom's CT_small.dcm is not available offline.")
  shutil.copy(path, tmp_path / "CT_small.dcm")
  reference = pydicom.dcmread(path)
  expected = reference.pixel_array * float(reference.RescaleSlope) + float(
    reference.RescaleIntercept
  )
  image = DicomFolderSource(str(tmp_path))[0]["image"]
  assert image.shape == (128, 128, 1)
  np.testing.assert_allclose(image[..., 0], expected)
  assert image.min() < -500  # Air in HU: the intercept of -1024 was applied.


def test_dicom_multiframe_rejected(tmp_path):
  _dicom(tmp_path / "cine.dcm", np.zeros((3, 4, 5), np.int16), frames=3)
  message = _raises("cine.dcm", lambda: DicomFolderSource(str(tmp_path))[0])
  assert "3 frames" in message


def test_dicom_corrupt_and_no_pixel_data(tmp_path):
  (tmp_path / "a_corrupt.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 7)
  _dicom(tmp_path / "b_nopixels.dcm", np.zeros((4, 5), np.int16), pixel_data=False)
  (tmp_path / "c_text.dcm").write_text("plain text, not DICOM")
  source = DicomFolderSource(str(tmp_path))
  _raises("a_corrupt.dcm", lambda: source[0])
  assert "no pixel data" in _raises("b_nopixels.dcm", lambda: source[1])
  _raises("c_text.dcm", lambda: source[2])


def test_dicom_missing_label_and_empty_folder(tmp_path):
  _dicom(tmp_path / "data" / "a.dcm", np.zeros((4, 5), np.int16))
  (tmp_path / "data" / "labels").mkdir()
  _raises("a.dcm", lambda: DicomFolderSource(str(tmp_path / "data"), label_dir="labels"))
  (tmp_path / "empty").mkdir()
  _raises(tmp_path / "empty", lambda: DicomFolderSource(str(tmp_path / "empty")))


# ----------------------------------------------------------------------------------------------
# NnUNetRawSource.


def _nnunet(root, cases=("case_001", "case_002"), test_cases=("case_101",), label_value=1):
  spec = {
    "channel_names": {"0": "T2", "1": "ADC"},
    "labels": {"background": 0, "tumor": 1},
    "numTraining": len(cases),
    "file_ending": ".nii.gz",
  }
  root.mkdir(parents=True)
  (root / "dataset.json").write_text(json.dumps(spec))
  for folder, names in (("imagesTr", cases), ("imagesTs", test_cases)):
    for i, case in enumerate(names):
      for channel in range(2):
        volume = np.full((4, 5, 3), 10 * i + channel, np.float32)
        _nifti(root / folder / f"{case}_{channel:04d}.nii.gz", volume, zooms=(0.7, 0.7, 2.0))
  for case in cases:
    label = np.zeros((4, 5, 3), np.uint8)
    label[1:3, 1:3, 1] = label_value
    _nifti(root / "labelsTr" / f"{case}.nii.gz", label)


def test_nnunet_raw_two_channels(tmp_path):
  root = tmp_path / "Dataset001_Toy"
  _nnunet(root)
  source = NnUNetRawSource(str(root))
  assert source.case_ids == ["case_001", "case_002"]
  assert "T2" in repr(source) and "NnUNetRawSource" in repr(source)
  example = source[1]
  assert example["image"].shape == (4, 5, 3, 2) and example["image"].dtype == np.float32
  np.testing.assert_array_equal(example["image"][0, 0, 0], [10, 11])
  assert example["label"].shape == (4, 5, 3) and example["label"].dtype == np.int32
  assert example["label"].sum() == 4
  np.testing.assert_allclose(source.spacing(0), (0.7, 0.7, 2.0), rtol=1e-6)
  test = NnUNetRawSource(str(root), split="test")
  assert test.case_ids == ["case_101"] and set(test[0]) == {"image"}


def test_nnunet_unknown_label_value(tmp_path):
  _nnunet(tmp_path / "ds", label_value=3)
  message = _raises("case_001.nii.gz", lambda: NnUNetRawSource(str(tmp_path / "ds"))[0])
  assert "[3]" in message


def test_nnunet_missing_channel_label_and_json(tmp_path):
  _nnunet(tmp_path / "ds")
  (tmp_path / "ds" / "imagesTr" / "case_002_0001.nii.gz").unlink()
  assert "case_002" in _raises("imagesTr", lambda: NnUNetRawSource(str(tmp_path / "ds")))
  _nnunet(tmp_path / "ds2")
  (tmp_path / "ds2" / "labelsTr" / "case_001.nii.gz").unlink()
  _raises("case_001_0000.nii.gz", lambda: NnUNetRawSource(str(tmp_path / "ds2")))
  (tmp_path / "ds3").mkdir()
  _raises("dataset.json", lambda: NnUNetRawSource(str(tmp_path / "ds3")))


def test_nnunet_channel_shape_mismatch(tmp_path):
  _nnunet(tmp_path / "ds", cases=("c",), test_cases=())
  _nifti(tmp_path / "ds" / "imagesTr" / "c_0001.nii.gz", np.zeros((4, 5, 2), np.float32))
  _raises("c_0001.nii.gz", lambda: NnUNetRawSource(str(tmp_path / "ds"))[0])


# ----------------------------------------------------------------------------------------------
# TfdsSource: a tiny dataset built and read without TensorFlow.


# `tfds_dir` (the tiny `mlsup_tiny` dataset) is a session fixture in tests/conftest.py.


def test_tfds_source_reads_without_tensorflow(tfds_dir):
  source = TfdsSource("mlsup_tiny", split="train", data_dir=tfds_dir, label_key="mask")
  assert len(source) == 3 and "mlsup_tiny" in repr(source)
  assert list(source.case_ids) == ["mlsup_tiny/train/0", "mlsup_tiny/train/1", "mlsup_tiny/train/2"]
  # TFDS shuffles records when preparing; each record's image and mask both encode its index.
  masks = []
  for example in (source[i] for i in range(len(source))):
    assert set(example) == {"image", "label"}
    assert example["image"].shape == (6, 7, 1) and example["image"].dtype == np.float32
    assert example["label"].shape == (6, 7) and example["label"].dtype == np.int32
    index = int(example["label"][0, 0])
    np.testing.assert_array_equal(example["label"], index)
    np.testing.assert_allclose(example["image"], 50 * index / 255, rtol=1e-6)
    masks.append(index)
  assert sorted(masks) == [0, 1, 2]
  classes = TfdsSource("mlsup_tiny", split="test", data_dir=tfds_dir)
  assert len(classes) == 2
  for example in (classes[0], classes[1]):
    assert set(example) == {"image", "class_label"} and example["class_label"].shape == ()
    np.testing.assert_allclose(example["image"], 50 * int(example["class_label"]) / 255)
  volumes = TfdsSource("mlsup_tiny", "train[1:]", tfds_dir, image_key="volume", label_key=None)
  assert len(volumes) == 2 and set(volumes[0]) == {"image"}
  assert volumes[0]["image"].shape == (4, 4, 3, 1)
  assert volumes[0]["image"].dtype == np.float32
  assert "tensorflow" not in sys.modules


def test_tfds_source_bad_inputs(tfds_dir, tmp_path):
  _raises(tmp_path / "nope", lambda: TfdsSource("mlsup_tiny", "train", str(tmp_path / "nope")))
  _raises("'no_such_dataset'", lambda: TfdsSource("no_such_dataset", "train", tfds_dir))
  _raises("'validation'", lambda: TfdsSource("mlsup_tiny", "validation", tfds_dir))
  message = _raises(
    "'labels'", lambda: TfdsSource("mlsup_tiny", "train", tfds_dir, label_key="labels")
  )
  assert "mask" in message


def test_tfds_record_mapping(tfds_dir):
  source = TfdsSource("mlsup_tiny", split="train", data_dir=tfds_dir, label_key="mask")
  where = "mlsup_tiny/train[7]"
  bad = np.ones((6, 7, 1), np.float32)
  bad[0, 0, 0] = np.nan
  assert "NaN/Inf" in _raises(where, lambda: source.to_example({"image": bad, "mask": 0}, where))
  mismatch = {"image": np.ones((6, 7), np.uint8), "mask": np.zeros((6, 6), np.int64)}
  assert "(6, 6)" in _raises(where, lambda: source.to_example(mismatch, where))
  _raises(where, lambda: source.to_example({"mask": np.zeros((6, 7))}, where))
  gray = source.to_example({"image": np.full((6, 7), 65535, np.uint16), "mask": 1}, where)
  assert gray["image"].shape == (6, 7, 1) and gray["class_label"] == 1
  np.testing.assert_allclose(gray["image"], 1.0)
