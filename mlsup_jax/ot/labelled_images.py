"""Labelled image datasets for OTDD: class folders or prepared TFDS splits → pixels and labels.

A dataset is named by a string: a folder of class sub-folders (`root/<class>/*.png`, read by
`ImageClassFolderSource`), or `tfds:<name>` for a TFDS dataset prepared as array_record (read by
`TfdsSource`, without TensorFlow). Nothing is downloaded: an unprepared TFDS dataset is a clear
error (tfds' own fallback would try to download and, offline, hang for minutes).
"""

from __future__ import annotations

import numpy as np

from mlsup_jax.data.sources.readers.class_folder import (
  ImageClassFolderSource,
  resize_image,
  to_unit_channels,
)
from mlsup_jax.data.sources.readers.tfds import TfdsSource
from mlsup_jax.data.validation import DataError

TFDS_PREFIX = "tfds:"


def _require_prepared_tfds(name: str, data_dir: str | None) -> None:
  try:
    import tensorflow_datasets as tfds  # Slow import, only for TFDS inputs.
  except ImportError as error:
    raise DataError(f"TFDS {name!r}: tensorflow-datasets is not installed.") from error
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as error:  # DatasetNotFoundError lists every dataset: keep its first line.
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    raise DataError(f"TFDS {name!r}: {first_line}") from error
  if not builder.is_prepared():
    raise DataError(
      f"TFDS {name!r} is not prepared in {builder.data_dir}: prepare it elsewhere with "
      "file_format='array_record' and pass its data_dir (nothing is downloaded here)."
    )


def _open(spec: str, image_size: int, channels: int, split: str, data_dir: str | None):
  if spec.startswith(TFDS_PREFIX):
    name = spec[len(TFDS_PREFIX) :]
    _require_prepared_tfds(name, data_dir)
    source = TfdsSource(name, split, data_dir=data_dir, label_key="label")
    return source, "class_label", None
  source = ImageClassFolderSource(spec, image_size=image_size, channels=channels)
  return source, "class_id", source.class_names


def load_labelled_images(
  spec: str,
  *,
  image_size: int = 28,
  channels: int = 1,
  split: str = "train",
  data_dir: str | None = None,
  max_examples: int | None = None,
  seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
  """Reads a labelled image dataset, every image resized to `image_size`² with `channels`.

  Args:
    spec: a class-folder root, or `tfds:<name>` (e.g. `tfds:mnist`).
    image_size: S, the side every image is resized to (bilinear, aspect not kept).
    channels: 1 (grey) or 3 (RGB).
    split: TFDS split (class folders ignore it).
    data_dir: TFDS data_dir; None: the TFDS default.
    max_examples: read only a uniform random subset of this many examples (None: all).
    seed: seeds that subset, so the same spec and seed give the same examples.

  Returns:
    (`images: [N, S, S, channels]` float32 in [0, 1], `labels: [N]` int32, class names or None).

  Raises:
    DataError: unreadable folders or files, an unknown or unprepared TFDS dataset, a TFDS
      dataset without a scalar `label`.
  """
  source, label_key, class_names = _open(spec, image_size, channels, split, data_dir)
  indices = np.arange(len(source))
  if max_examples is not None and len(source) > max_examples:
    indices = np.sort(np.random.default_rng(seed).choice(len(source), max_examples, replace=False))
  images, labels = [], []
  for index in indices:
    example = source[int(index)]
    if label_key not in example:
      raise DataError(f"{spec}[{index}]: no scalar class label (keys: {sorted(example)}).")
    if example["image"].ndim != 3:
      raise DataError(f"{spec}[{index}]: image shape {example['image'].shape}, expected 2-D.")
    image = to_unit_channels(example["image"], channels)
    images.append(resize_image(image, image_size))
    labels.append(int(example[label_key]))
  return np.stack(images), np.asarray(labels, np.int32), class_names
