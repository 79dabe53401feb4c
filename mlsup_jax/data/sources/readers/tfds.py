"""TensorFlow Datasets prepared as array_record → `TfdsSource` (no TensorFlow needed)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlsup_jax.data.sources.readers.common import as_image, as_label, require_dir
from mlsup_jax.data.sources.readers.images import auto_scale
from mlsup_jax.data.validation import DataError


class _CaseIds(Sequence):
  """`name/split/index` for every record, computed on demand (TFDS splits can be huge)."""

  def __init__(self, prefix: str, length: int):
    self._prefix, self._length = prefix, length

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(self._length))]
    index = operator.index(index)
    if not -self._length <= index < self._length:
      raise IndexError(index)
    return f"{self._prefix}/{index % self._length}"


class TfdsSource:
  """A TFDS split read with `tfds.data_source` (random access over array_record files).

  The dataset must already be prepared in `data_dir` with `file_format="array_record"`; reading
  needs no TensorFlow (Image features decode with PIL or OpenCV). Records map to `image: [H, W, C]`
  (2-D images get a channel axis; volumes stay `[H, W, D, C]`) float32 = values × `scale`, and
  `label`: a dense mask of the image's spatial shape (a trailing size-1 axis is dropped) becomes
  `label` int32; a scalar class becomes `class_label: []` int32. Other features are dropped.

  Args:
    name: registered TFDS name, optionally with config/version ("mnist", "foo/bar:1.0.0").
    split: TFDS split, slicing allowed ("train", "test[:10%]").
    data_dir: folder holding `<name>/<version>/`; None: the TFDS default.
    image_key: feature holding the image.
    label_key: feature holding the label; None or "": no labels.
    scale: multiplies the pixels; None: `1 / max` of integer dtypes (uint8 → [0, 1]), 1 for float.
  """

  def __init__(
    self,
    name: str,
    split: str,
    data_dir: str | None = None,
    image_key: str = "image",
    label_key: str | None = "label",
    scale: float | None = None,
  ):
    import tensorflow_datasets as tfds  # Imported here: slow, and only this source needs it.

    self.name, self.split = name, split
    self.data_dir = str(require_dir(data_dir, "TFDS data_dir")) if data_dir else None
    self.image_key, self.label_key = image_key, label_key or None
    self.scale = None if scale is None else float(scale)
    where = f"TFDS {name!r} split {split!r} in {self.data_dir or 'the default data_dir'}"
    try:
      self._source = tfds.data_source(name, split=split, data_dir=self.data_dir)
    except Exception as error:  # TFDS raises many types; the first line says what went wrong.
      first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
      raise DataError(
        f"{where}: cannot open ({type(error).__name__}: {first_line}). It must be prepared "
        "with file_format='array_record'."
      ) from error
    features = getattr(getattr(self._source, "dataset_info", None), "features", None)
    keys = sorted(features.keys()) if features is not None else None
    for key in (self.image_key, self.label_key):
      if key is not None and keys is not None and key not in keys:
        raise DataError(f"{where}: no feature {key!r}; features are {keys}.")
    self.case_ids = _CaseIds(f"{name}/{split}", len(self._source))

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index) -> dict[str, np.ndarray]:
    index = operator.index(index)
    return self.to_example(self._source[index], f"{self.name}/{self.split}[{index}]")

  def to_example(self, record: dict, where: str) -> dict[str, np.ndarray]:
    """Maps one decoded TFDS record to the example convention; `where` names it in errors."""
    if self.image_key not in record:
      raise DataError(f"{where}: record has no {self.image_key!r} (keys: {sorted(record)}).")
    pixels = np.asarray(record[self.image_key])
    if pixels.ndim == 2:
      pixels = pixels[..., None]
    if pixels.ndim not in (3, 4):
      raise DataError(f"{where}: image has shape {pixels.shape}; expected [H, W(, D), C].")
    scale = auto_scale(pixels.dtype) if self.scale is None else self.scale
    example = {"image": as_image(pixels, where, scale)}
    if self.label_key is None:
      return example
    if self.label_key not in record:
      raise DataError(f"{where}: record has no {self.label_key!r} (keys: {sorted(record)}).")
    label = np.asarray(record[self.label_key])
    if label.ndim == 0:
      example["class_label"] = as_label(label, where)
      return example
    spatial = example["image"].shape[:-1]
    if label.ndim == len(spatial) + 1 and label.shape[-1] == 1:
      label = label[..., 0]
    if label.shape != spatial:
      raise DataError(
        f"{where}: label shape {label.shape} does not match image spatial shape {spatial}."
      )
    example["label"] = as_label(label, where)
    return example

  def __repr__(self) -> str:
    data_dir = Path(self.data_dir) if self.data_dir else "default"
    return (
      f"TfdsSource(name={self.name!r}, split={self.split!r}, data_dir={str(data_dir)!r}, "
      f"{len(self)} records)"
    )
