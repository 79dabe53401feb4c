"""DICOM files, one 2-D image each → `DicomFolderSource`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlsup_jax.data.sources.readers.common import (
  FileSource,
  as_image,
  check_pair,
  read_or_raise,
  require_dir,
)
from mlsup_jax.data.sources.readers.images import IMAGE_SUFFIXES, read_label_2d
from mlsup_jax.data.validation import DataError

DICOM_SUFFIXES = (".dcm", ".dicom")
LABEL_SUFFIXES = (*IMAGE_SUFFIXES, ".npy")


def _is_dicom_file(path: Path) -> bool:
  """`.dcm`/`.dicom`, or no extension (a numeric one counts as none, as in `1.2.840.5`) and the
  `DICM` preamble. DICOMDIR index files are skipped."""
  import pydicom

  if path.name.startswith(".") or path.name.upper() == "DICOMDIR" or not path.is_file():
    return False
  suffix = path.suffix.lower()
  if suffix in DICOM_SUFFIXES:
    return True
  return (suffix == "" or suffix[1:].isdigit()) and pydicom.misc.is_dicom(path)


def read_dicom(path: Path) -> np.ndarray:
  """One single-frame DICOM image as `[H, W, C]` float32, in modality units (CT: HU).

  Stored values are rescaled by RescaleSlope / RescaleIntercept when present.

  Raises:
    DataError: naming the file if it is unreadable, has no pixel data, is multi-frame, its pixel
      data cannot be decoded, or it has NaN/Inf values.
  """
  import pydicom

  dataset = read_or_raise(pydicom.dcmread, path, "DICOM file")
  if not any(k in dataset for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
    raise DataError(
      f"{path}: DICOM file has no pixel data (SOP class {dataset.get('SOPClassUID')})."
    )
  frames = int(dataset.get("NumberOfFrames", 1) or 1)
  if frames > 1:
    raise DataError(
      f"{path}: DICOM file has {frames} frames; only single-frame 2-D images are read."
    )
  pixels = read_or_raise(lambda _: dataset.pixel_array, path, "DICOM pixel data")
  if pixels.ndim == 2:
    pixels = pixels[..., None]
  if pixels.ndim != 3:
    raise DataError(f"{path}: DICOM pixel array has shape {pixels.shape}; expected [H, W(, C)].")
  slope = float(dataset.get("RescaleSlope", 1) or 1)
  intercept = float(dataset.get("RescaleIntercept", 0) or 0)
  return as_image(pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept), path)


class DicomFolderSource(FileSource):
  """Every DICOM file under `root` (recursively) as one 2-D example.

  Files are `.dcm` / `.dicom`, or extension-less files with the DICOM preamble. Example:
  `image: [H, W, 1]` float32 (`[H, W, 3]` for colour) in modality units: stored values ×
  RescaleSlope + RescaleIntercept, so CT comes out in HU. Multi-frame files are rejected. With
  `label_dir`, every file `root/a/b.dcm` needs a mask `label_dir/a/b.{png,tif,tiff,bmp,npy}`,
  read as `label: [H, W]` int32. Case ids are the paths relative to `root` without `.dcm`.

  Args:
    root: folder searched recursively for DICOM files.
    label_dir: folder of label masks (relative to `root`, or absolute); None: no labels.
  """

  def __init__(self, root: str, label_dir: str | None = None):
    self.root = require_dir(root, "DICOM folder")
    labels_dir = require_dir(self.root / label_dir, "label folder") if label_dir else None
    paths = sorted(
      p
      for p in self.root.rglob("*")
      if (labels_dir is None or not p.is_relative_to(labels_dir)) and _is_dicom_file(p)
    )
    if not paths:
      raise DataError(f"{self.root}: no DICOM files found (.dcm, .dicom or with a DICM preamble).")
    self.image_paths = paths
    self.case_ids = []
    for path in paths:
      relative = path.relative_to(self.root)
      if relative.suffix.lower() in DICOM_SUFFIXES:
        relative = relative.with_suffix("")
      self.case_ids.append(relative.as_posix())
    self.label_paths = [None] * len(paths)
    if labels_dir is not None:
      for i, (case_id, path) in enumerate(zip(self.case_ids, paths, strict=True)):
        found = [labels_dir / (case_id + s) for s in LABEL_SUFFIXES]
        found = [p for p in found if p.is_file()]
        if not found:
          raise DataError(
            f"{path}: no label file {labels_dir / case_id}{{{','.join(LABEL_SUFFIXES)}}}."
          )
        self.label_paths[i] = found[0]

  def _read(self, index: int) -> dict[str, np.ndarray]:
    path = self.image_paths[index]
    example = {"image": read_dicom(path)}
    label_path = self.label_paths[index]
    if label_path is not None:
      example["label"] = read_label_2d(label_path)
      check_pair(example["image"], example["label"], path, label_path)
    return example
