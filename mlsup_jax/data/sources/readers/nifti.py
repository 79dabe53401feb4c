"""NIfTI volumes → `NiftiFolderSource`, and the nnU-Net v2 raw layout → `NnUNetRawSource`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from mlsup_jax.data.sources.readers.common import (
  FileSource,
  as_image,
  as_label,
  check_pair,
  list_files,
  pair_labels,
  read_or_raise,
  require_dir,
)
from mlsup_jax.data.sources.readers.images import read_label_2d, read_pixels
from mlsup_jax.data.validation import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def read_nifti(path: Path) -> np.ndarray:
  """The voxels of a NIfTI file (scaled by `scl_slope`/`scl_inter`), in stored axis order."""
  import nibabel  # Imported here: only NIfTI sources need it.

  return read_or_raise(lambda p: np.asarray(nibabel.load(p).dataobj), path, "NIfTI file")


def nifti_zooms(path: Path) -> tuple[float, ...]:
  """The three spatial voxel sizes of a NIfTI file's header (usually mm)."""
  import nibabel

  zooms = read_or_raise(lambda p: nibabel.load(p).header.get_zooms(), path, "NIfTI header")
  return tuple(float(z) for z in zooms[:3])


def volume_image(voxels: np.ndarray, path: Path) -> np.ndarray:
  """`[H, W, D]` → `[H, W, D, 1]`; `[H, W, D, C]` (or NIfTI's `[H, W, D, 1, C]`) as is."""
  if voxels.ndim == 5 and voxels.shape[3] == 1:
    voxels = voxels[:, :, :, 0]
  if voxels.ndim == 3:
    voxels = voxels[..., None]
  if voxels.ndim != 4:
    raise DataError(
      f"{path}: image has shape {voxels.shape}; expected a volume [H, W, D] or [H, W, D, C]."
    )
  return as_image(voxels, path)


def volume_label(voxels: np.ndarray, path: Path) -> np.ndarray:
  """`[H, W, D]` (or `[H, W, D, 1]`) → `[H, W, D]` int32."""
  if voxels.ndim == 4 and voxels.shape[-1] == 1:
    voxels = voxels[..., 0]
  if voxels.ndim != 3:
    raise DataError(f"{path}: label has shape {voxels.shape}; expected a volume [H, W, D].")
  return as_label(voxels, path)


class NiftiFolderSource(FileSource):
  """NIfTI volumes in `root/image_dir`, optional label volumes with the same name in `label_dir`.

  Example: `image: [H, W, D, C]` float32 (C = 1 for 3-D files; 4-D files are channel-last) and,
  when `root/label_dir` exists, `label: [H, W, D]` int32. Axes are in stored voxel order (no
  reorientation); `spacing(i)` gives the voxel size from the header.

  Args:
    root: dataset directory.
    image_dir: image subdirectory of `root` (`.nii` / `.nii.gz` files).
    label_dir: label subdirectory of `root`; optional, but if it exists every image needs a label.
  """

  def __init__(self, root: str, image_dir: str = "images", label_dir: str = "labels"):
    self.root = require_dir(root, "dataset root")
    images = list_files(
      require_dir(self.root / image_dir, "image directory"), NIFTI_SUFFIXES, "NIfTI image"
    )
    self.case_ids = list(images)
    self.image_paths = list(images.values())
    labels_dir = self.root / label_dir
    if label_dir and labels_dir.is_dir():
      label_files = list_files(labels_dir, NIFTI_SUFFIXES, "NIfTI label")
      self.label_paths = pair_labels(images, label_files, labels_dir)
    else:
      self.label_paths = [None] * len(images)

  def spacing(self, index: int) -> tuple[float, float, float]:
    """Voxel size `(dH, dW, dD)` of example `index`, from its NIfTI header zooms."""
    return nifti_zooms(self.image_paths[index])

  def _read(self, index: int) -> dict[str, np.ndarray]:
    path = self.image_paths[index]
    example = {"image": volume_image(read_nifti(path), path)}
    label_path = self.label_paths[index]
    if label_path is not None:
      example["label"] = volume_label(read_nifti(label_path), label_path)
      check_pair(example["image"], example["label"], path, label_path)
    return example


def _label_values(labels: dict, path: Path) -> set[int]:
  """Every integer in dataset.json's `labels` (values are ints, or lists of ints for regions)."""
  values = set()
  for name, value in labels.items():
    for v in value if isinstance(value, list | tuple) else [value]:
      if isinstance(v, bool) or not isinstance(v, int):
        raise DataError(f"{path}: label {name!r} has value {v!r}; expected an integer.")
      values.add(v)
  return values


class NnUNetRawSource(FileSource):
  """A dataset in the nnU-Net v2 raw layout (`nnUNet_raw/DatasetXXX_Name`).

  `dataset.json` gives `channel_names` ({"0": "CT", …}), `labels` ({"background": 0, …}) and
  `file_ending`; case `C` has one file per channel, `imagesTr/C_0000<ending>`, `C_0001…`,
  stacked as channels, and `labelsTr/C<ending>`. `split="test"` reads `imagesTs` without labels.
  NIfTI (`.nii.gz`, `.nii`) gives `image: [H, W, D, C]`, `label: [H, W, D]`; 2-D PNG/TIFF/BMP
  gives `image: [H, W, C]`, `label: [H, W]`. Intensities are not rescaled. Label values must be
  among dataset.json's `labels`.

  Args:
    root: the dataset folder holding `dataset.json`.
    split: "train" (imagesTr + labelsTr) or "test" (imagesTs, no labels).
  """

  def __init__(self, root: str, split: str = "train"):
    self.root = require_dir(root, "nnU-Net dataset folder")
    if split not in ("train", "test"):
      raise DataError(f"{self.root}: split {split!r} is not 'train' or 'test'.")
    self.split = split
    spec_path = self.root / "dataset.json"
    spec = read_or_raise(lambda p: json.loads(p.read_text()), spec_path, "dataset.json")
    missing = [k for k in ("channel_names", "labels", "file_ending") if k not in spec]
    if missing:
      raise DataError(f"{spec_path}: missing key(s) {missing}.")
    self.channel_names = {int(k): v for k, v in spec["channel_names"].items()}
    self.labels = dict(spec["labels"])
    self.label_values = _label_values(self.labels, spec_path)
    self.file_ending = spec["file_ending"]
    self.volumetric = self.file_ending.lower() in NIFTI_SUFFIXES
    if not self.volumetric and self.file_ending.lower() not in (".png", ".tif", ".tiff", ".bmp"):
      raise DataError(
        f"{spec_path}: file_ending {self.file_ending!r} is not supported (NIfTI, PNG, TIFF, BMP)."
      )
    image_dir = require_dir(
      self.root / ("imagesTr" if split == "train" else "imagesTs"), "image folder"
    )
    files = list_files(image_dir, (self.file_ending,), "nnU-Net image")
    channels: dict[str, dict[int, Path]] = {}
    for stem, path in files.items():
      match = re.fullmatch(r"(.+)_(\d{4})", stem)
      if match is None:
        raise DataError(f"{path}: name is not CASE_XXXX{self.file_ending} (XXXX: channel index).")
      channels.setdefault(match[1], {})[int(match[2])] = path
    self.case_ids = sorted(channels)
    self.channel_paths = []
    for case in self.case_ids:
      if sorted(channels[case]) != sorted(self.channel_names):
        expected = [f"{case}_{c:04d}{self.file_ending}" for c in sorted(self.channel_names)]
        raise DataError(
          f"{image_dir}: case {case!r} has channel files {sorted(channels[case])} but "
          f"dataset.json names channels {sorted(self.channel_names)} (expected {expected})."
        )
      self.channel_paths.append([channels[case][c] for c in sorted(channels[case])])
    self.image_paths = [paths[0] for paths in self.channel_paths]
    if split == "train":
      labels_dir = require_dir(self.root / "labelsTr", "label folder")
      label_files = list_files(labels_dir, (self.file_ending,), "nnU-Net label")
      self.label_paths = pair_labels(
        dict(zip(self.case_ids, self.image_paths, strict=True)), label_files, labels_dir
      )
    else:
      self.label_paths = [None] * len(self.case_ids)

  def spacing(self, index: int) -> tuple[float, float, float]:
    """Voxel size of case `index` from its first channel's NIfTI header (NIfTI datasets only)."""
    if not self.volumetric:
      raise DataError(f"{self.root}: spacing() needs NIfTI files, not {self.file_ending!r}.")
    return nifti_zooms(self.image_paths[index])

  def _read_channel(self, path: Path) -> np.ndarray:
    if self.volumetric:
      voxels = read_nifti(path)
      return voxels[..., 0] if voxels.ndim == 4 and voxels.shape[-1] == 1 else voxels
    return read_pixels(path)

  def _read(self, index: int) -> dict[str, np.ndarray]:
    paths = self.channel_paths[index]
    arrays = [as_image(self._read_channel(path), path) for path in paths]
    ndim = 3 if self.volumetric else 2
    for path, array in zip(paths, arrays, strict=True):
      if array.ndim != ndim or array.shape != arrays[0].shape:
        raise DataError(
          f"{path}: channel has shape {array.shape}; expected {ndim}-D like {paths[0].name} "
          f"{arrays[0].shape}."
        )
    example = {"image": np.stack(arrays, axis=-1)}
    label_path = self.label_paths[index]
    if label_path is not None:
      if self.volumetric:
        label = volume_label(read_nifti(label_path), label_path)
      else:
        label = read_label_2d(label_path)
      check_pair(example["image"], label, paths[0], label_path)
      unknown = sorted(set(np.unique(label).tolist()) - self.label_values)
      if unknown:
        raise DataError(
          f"{label_path}: label values {unknown[:10]} are not among dataset.json labels "
          f"{sorted(self.label_values)}."
        )
      example["label"] = label
    return example

  def __repr__(self) -> str:
    return (
      f"NnUNetRawSource(root={str(self.root)!r}, split={self.split!r}, {len(self)} cases, "
      f"channels={list(self.channel_names.values())}, labels={self.labels})"
    )
