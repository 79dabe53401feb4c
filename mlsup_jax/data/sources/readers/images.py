"""2-D image files (PNG, TIFF, JPEG, BMP) → `ImageFolderSource`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

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
from mlsup_jax.data.validation import DataError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
_TIFF_SUFFIXES = (".tif", ".tiff")
# PIL modes whose pixels `np.asarray` returns unchanged (16-bit modes keep their 16 bits).
_RAW_MODES = {"L", "LA", "I", "I;16", "I;16L", "I;16B", "F", "RGB", "RGBA"}
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as PIL's convert("L").


def read_pixels(path: Path, label: bool = False) -> np.ndarray:
  """The stored pixels of a 2-D image file: `[H, W]` or `[H, W, C]`, in the file's dtype.

  TIFF goes through tifffile, everything else through PIL. Images: palette and other modes are
  expanded to RGB(A), 1-bit to 0/255. Labels (`label=True`): palette PNGs give their indices and
  1-bit files 0/1, as class indices.

  Raises:
    DataError: naming the file when it cannot be read or is not a single 2-D image.
  """

  def read(path):
    if path.name.lower().endswith(_TIFF_SUFFIXES):
      return tifffile.imread(path)
    with Image.open(path) as image:
      if label and image.mode in ("P", "1"):
        return np.asarray(image).astype(np.uint8)
      if image.mode not in _RAW_MODES:
        has_alpha = image.mode in ("PA", "RGBa", "La") or "transparency" in image.info
        target = {"1": "L", "I;16N": "I"}.get(image.mode, "RGBA" if has_alpha else "RGB")
        image = image.convert(target)
      return np.asarray(image)

  pixels = read_or_raise(read, path, "image file")
  if pixels.ndim == 3 and pixels.shape[-1] > 4 >= pixels.shape[0]:
    pixels = np.moveaxis(pixels, 0, -1)  # Planar TIFF: [C, H, W].
  if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[-1] > 4):
    raise DataError(
      f"{path}: pixel array has shape {pixels.shape}; expected one 2-D image [H, W] or "
      "[H, W, C] with C ≤ 4 (multi-page or volumetric files are not supported here)."
    )
  return pixels


def to_channels(pixels: np.ndarray, grayscale: bool) -> np.ndarray:
  """`[H, W]` / `[H, W, C]` → `[H, W, C']`: one luminance channel, or the stored channels."""
  if pixels.ndim == 2:
    return pixels[..., None]
  if not grayscale:
    return pixels
  if pixels.shape[-1] <= 2:  # Gray or gray + alpha.
    return pixels[..., :1]
  return (pixels[..., :3].astype(np.float32) @ _LUMA)[..., None]


def auto_scale(dtype: np.dtype) -> float:
  """`1 / max` of an integer dtype (so 8- and 16-bit images both land in [0, 1]); 1 otherwise."""
  if np.issubdtype(dtype, np.integer):
    return 1.0 / float(np.iinfo(dtype).max)
  return 1.0


def read_label_2d(path: Path) -> np.ndarray:
  """A single-channel 2-D label image (`.npy` or any image format) as `[H, W]` int32."""
  if path.name.lower().endswith(".npy"):
    pixels = read_or_raise(np.load, path, "label file")
  else:
    pixels = read_pixels(path, label=True)
  if pixels.ndim == 3 and pixels.shape[-1] == 1:
    pixels = pixels[..., 0]
  if pixels.ndim != 2:
    raise DataError(
      f"{path}: label has shape {pixels.shape}; expected a single-channel [H, W] index mask."
    )
  return as_label(pixels, path)


class ImageFolderSource(FileSource):
  """2-D images in `root/image_dir`, optional label masks with the same stem in `root/label_dir`.

  Example: `image: [H, W, C]` float32 = stored pixels × `scale` (C = 1 when `grayscale`, else the
  stored channels), and `label: [H, W]` int32 when `root/label_dir` exists (it is optional; if it
  exists every image needs a label). 16-bit PNG/TIFF keep their full range.

  Args:
    root: dataset directory.
    image_dir: image subdirectory of `root` (".": `root` itself).
    label_dir: label subdirectory of `root` (PNG/TIFF/BMP/NPY masks of class indices).
    grayscale: reduce RGB(A) to one luminance channel (alpha is dropped).
    scale: multiplies the pixels; None: `1 / max` of each file's integer dtype (1/255 for 8-bit,
      1/65535 for 16-bit files), 1 for float files.
  """

  def __init__(
    self,
    root: str,
    image_dir: str = "images",
    label_dir: str = "labels",
    grayscale: bool = True,
    scale: float | None = 1 / 255,
  ):
    self.root = require_dir(root, "dataset root")
    self.grayscale = bool(grayscale)
    self.scale = None if scale is None else float(scale)
    images = list_files(
      require_dir(self.root / image_dir, "image directory"), IMAGE_SUFFIXES, "image"
    )
    self.case_ids = list(images)
    self.image_paths = list(images.values())
    labels_dir = self.root / label_dir
    if label_dir and labels_dir.is_dir() and labels_dir != self.image_paths[0].parent:
      label_files = list_files(labels_dir, (*IMAGE_SUFFIXES, ".npy"), "label")
      self.label_paths = pair_labels(images, label_files, labels_dir)
    else:
      self.label_paths = [None] * len(images)

  def _read(self, index: int) -> dict[str, np.ndarray]:
    path = self.image_paths[index]
    pixels = read_pixels(path)
    scale = auto_scale(pixels.dtype) if self.scale is None else self.scale
    example = {"image": as_image(to_channels(pixels, self.grayscale), path, scale)}
    label_path = self.label_paths[index]
    if label_path is not None:
      example["label"] = read_label_2d(label_path)
      check_pair(example["image"], example["label"], path, label_path)
    return example
