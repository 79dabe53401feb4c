"""Shared pieces of the file-based sources: listing, pairing, array checks, the base class."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mlsup_jax.data.validation import DataError


def require_dir(path: str | Path, what: str) -> Path:
  """Returns `path` as a `Path`, or raises `DataError` when it is not an existing directory."""
  path = Path(path).expanduser()
  if not path.is_dir():
    problem = "is not a directory" if path.exists() else "does not exist"
    raise DataError(f"{path}: {what} {problem}.")
  return path


def case_stem(path: Path, suffixes: Sequence[str]) -> str:
  """The file name without the first matching (possibly compound) suffix, e.g. `.nii.gz`."""
  name = path.name
  for suffix in sorted(suffixes, key=len, reverse=True):
    if name.lower().endswith(suffix.lower()):
      return name[: -len(suffix)]
  return name


def list_files(directory: Path, suffixes: Sequence[str], what: str) -> dict[str, Path]:
  """Maps case stem → file for the visible files in `directory` ending with one of `suffixes`.

  Raises:
    DataError: when no file matches, or two files share a stem (e.g. `a.png` and `a.tif`).
  """
  files: dict[str, Path] = {}
  for path in sorted(directory.iterdir()):
    if path.name.startswith(".") or not path.is_file():
      continue
    if not any(path.name.lower().endswith(s.lower()) for s in suffixes):
      continue
    stem = case_stem(path, suffixes)
    if stem in files:
      raise DataError(
        f"{path}: {what} '{stem}' is ambiguous: {files[stem].name} has the same stem."
      )
    files[stem] = path
  if not files:
    raise DataError(f"{directory}: no {what} files found (looked for {', '.join(suffixes)}).")
  return files


def pair_labels(
  images: dict[str, Path], label_files: dict[str, Path], label_dir: Path
) -> list[Path]:
  """The label file of every image, in image order; raises `DataError` naming a missing one."""
  missing = [(stem, path) for stem, path in images.items() if stem not in label_files]
  if missing:
    stem, path = missing[0]
    raise DataError(
      f"{path}: no label file with stem '{stem}' in {label_dir} "
      f"({len(missing)} of {len(images)} images lack a label)."
    )
  return [label_files[stem] for stem in images]


def as_image(array: np.ndarray, path: Path | str, scale: float = 1.0) -> np.ndarray:
  """`array * scale` as float32; raises `DataError` naming `path` on NaN/Inf pixels."""
  image = np.asarray(array, np.float32)
  if scale != 1.0:
    image = image * np.float32(scale)
  finite = np.isfinite(image)
  if not finite.all():
    raise DataError(f"{path}: image has {int(finite.size - finite.sum())} NaN/Inf pixel values.")
  return image


def as_label(array: np.ndarray, path: Path | str) -> np.ndarray:
  """The label as int32; raises `DataError` naming `path` on non-integer values."""
  label = np.asarray(array)
  if not np.issubdtype(label.dtype, np.integer) and not np.issubdtype(label.dtype, np.bool_):
    if not np.issubdtype(label.dtype, np.number):
      raise DataError(f"{path}: label dtype {label.dtype} is not numeric.")
    if not np.all(np.isfinite(label)) or np.any(label != np.round(label)):
      raise DataError(f"{path}: label has non-integer values (dtype {label.dtype}).")
  return label.astype(np.int32)


def check_pair(image: np.ndarray, label: np.ndarray, image_path, label_path) -> None:
  """Raises `DataError` naming both files when the label is not `image.shape[:-1]`."""
  if label.shape != image.shape[:-1]:
    raise DataError(
      f"{label_path}: label shape {label.shape} does not match the spatial shape "
      f"{image.shape[:-1]} of image {image_path}."
    )


def read_or_raise(read: Callable, path: Path, what: str):
  """`read(path)`, turning any failure other than `DataError` into one naming the file."""
  try:
    return read(path)
  except DataError:
    raise
  except Exception as error:  # Any reader failure means a bad file.
    raise DataError(f"{path}: cannot read {what} ({type(error).__name__}: {error}).") from error


class FileSource:
  """A random-access source of one image file (and optional label file) per example.

  Subclasses fill `case_ids`, `image_paths`, `label_paths` (None entries: no label) and
  implement `_read(index) -> example`.
  """

  root: Path
  case_ids: list[str]
  image_paths: list[Path]
  label_paths: list[Path | None]

  def __len__(self) -> int:
    return len(self.case_ids)

  def __getitem__(self, index) -> dict[str, np.ndarray]:
    index = operator.index(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"{type(self).__name__} index {index} out of range [0, {len(self)}).")
    return self._read(index % len(self))

  def _read(self, index: int) -> dict[str, np.ndarray]:
    raise NotImplementedError

  @property
  def has_labels(self) -> bool:
    return any(p is not None for p in self.label_paths)

  def __repr__(self) -> str:
    labels = "with labels" if self.has_labels else "no labels"
    return f"{type(self).__name__}(root={str(self.root)!r}, {len(self)} cases, {labels})"
