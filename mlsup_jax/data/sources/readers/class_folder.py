"""Image classification folders (`root/<class_name>/*.png|jpg|tif|dcm`) → `ImageClassFolderSource`.

The layout of torchvision's `ImageFolder` and of most Kaggle classification sets (e.g. the IVC
filter, ISIC and RSNA exports used by TEND and CVAD, spec S5.7 / S6.7): one sub-folder per class,
class ids in sorted folder-name order, every image resized to one square size in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mlsup_jax.data.sources.readers.common import as_image, case_stem, require_dir
from mlsup_jax.data.sources.readers.dicom import DICOM_SUFFIXES, read_dicom
from mlsup_jax.data.sources.readers.images import (
  IMAGE_SUFFIXES,
  auto_scale,
  read_pixels,
  to_channels,
)
from mlsup_jax.data.validation import DataError

CLASS_FOLDER_SUFFIXES = (*IMAGE_SUFFIXES, *DICOM_SUFFIXES)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as PIL's convert("L").


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of every channel to `size`², anti-aliased when shrinking (PIL, float32).

  The aspect ratio is not kept (as in TEND / CVAD, which resize every image to 256²).

  Args:
    image: `[H, W, C]`.
    size: output side.

  Returns:
    `[size, size, C]` float32.
  """
  image = np.asarray(image, np.float32)
  if image.shape[:2] == (size, size):
    return image.copy()
  channels = [
    np.asarray(
      Image.fromarray(np.ascontiguousarray(image[..., c])).resize(
        (size, size), Image.Resampling.BILINEAR
      )
    )
    for c in range(image.shape[-1])
  ]
  return np.stack(channels, axis=-1).astype(np.float32)


def percentile_normalize(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
  """Robust min–max to [0, 1]: the `low`-th percentile → 0, the `high`-th → 1, clipped.

  For images in arbitrary units (DICOM modality values), where a few hot pixels or the padding
  value would otherwise set the range. A constant image maps to zeros.
  """
  image = np.asarray(image, np.float32)
  lo, hi = np.percentile(image, [low, high])
  if not hi > lo:  # Nearly constant: fall back to the full range.
    lo, hi = float(image.min()), float(image.max())
  if not hi > lo:
    return np.zeros_like(image)
  return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def to_unit_channels(image: np.ndarray, channels: int) -> np.ndarray:
  """`[H, W, C]` (C = 1, 2, 3 or 4) → `[H, W, channels]` with channels 1 (luma) or 3 (RGB).

  Alpha is dropped; grey is replicated to 3 channels.
  """
  if image.shape[-1] in (2, 4):
    image = image[..., :-1]
  if channels == 1 and image.shape[-1] == 3:
    return (image @ _LUMA)[..., None].astype(np.float32)
  if channels == 3 and image.shape[-1] == 1:
    return np.repeat(image, 3, axis=-1)
  return image


class ImageClassFolderSource:
  """Images in `root/<class_name>/`, one class per sub-folder, as a classification source.

  Class ids follow the sorted sub-folder names. Hidden entries and files directly in `root` are
  ignored; files of other types inside a class folder are ignored. PNG / TIFF / JPEG / BMP are
  scaled by `1 / max` of their integer dtype; DICOM files (modality units) by a robust min–max
  (1st–99th percentile). Every image is converted to `channels` and resized to `image_size`².

  Example: `image: [S, S, channels]` float32 in [0, 1], `class_id: []` int32.

  Args:
    root: dataset folder holding one sub-folder per class.
    image_size: S, the side of the (square) output images.
    channels: 1 (grey, BT.601 luma) or 3 (RGB; grey is replicated).

  Attributes:
    class_names: sorted class-folder names (`class_id` indexes them).
    class_ids: `[N]` int32, the class of every example (no image is read).
    case_ids: `"<class_name>/<file stem>"` of every example.
    image_paths: the file of every example.

  Raises:
    DataError: when `root` is not a folder, has no class folders, a class folder has no image,
      or (on read) a file cannot be decoded or has NaN/Inf pixels.
    ValueError: on an invalid `image_size` or `channels`.
  """

  def __init__(self, root: str, image_size: int = 64, channels: int = 1):
    if int(image_size) < 1:
      raise ValueError(f"image_size must be ≥ 1, got {image_size}.")
    if int(channels) not in (1, 3):
      raise ValueError(f"channels must be 1 or 3, got {channels}.")
    self.root = require_dir(root, "class folder root")
    self.image_size = int(image_size)
    self.channels = int(channels)
    folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
      raise DataError(f"{self.root}: no class sub-folders (expected root/<class_name>/*.png).")
    self.class_names = tuple(p.name for p in folders)
    self.image_paths: list[Path] = []
    self.case_ids: list[str] = []
    class_ids = []
    for class_id, folder in enumerate(folders):
      files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.name.lower().endswith(CLASS_FOLDER_SUFFIXES)
      )
      if not files:
        raise DataError(
          f"{folder}: class folder '{folder.name}' has no images "
          f"({', '.join(CLASS_FOLDER_SUFFIXES)})."
        )
      self.image_paths += files
      self.case_ids += [f"{folder.name}/{case_stem(p, CLASS_FOLDER_SUFFIXES)}" for p in files]
      class_ids += [class_id] * len(files)
    self.class_ids = np.asarray(class_ids, np.int32)
    self.class_ids.flags.writeable = False

  def __len__(self) -> int:
    return len(self.image_paths)

  def __getitem__(self, index) -> dict[str, np.ndarray]:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"ImageClassFolderSource index {index} out of range [0, {len(self)}).")
    index %= len(self)
    path = self.image_paths[index]
    if path.name.lower().endswith(DICOM_SUFFIXES):
      image = percentile_normalize(read_dicom(path))
    else:
      pixels = read_pixels(path)
      image = as_image(to_channels(pixels, grayscale=False), path, auto_scale(pixels.dtype))
    image = resize_image(to_unit_channels(image, self.channels), self.image_size)
    return {
      "image": np.clip(image, 0.0, 1.0),
      "class_id": np.asarray(self.class_ids[index], np.int32),
    }

  def __repr__(self) -> str:
    return (
      f"ImageClassFolderSource(root={str(self.root)!r}, {len(self)} images, "
      f"classes={list(self.class_names)})"
    )
