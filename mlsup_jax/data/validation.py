"""Checks that turn bad input into one clear error naming the problem (DESIGN §4)."""

from __future__ import annotations

import numpy as np


class DataError(ValueError):
  """Bad input data: the message names the example or file and the problem."""


def check_example(
  example: dict,
  *,
  where: str,
  spatial_dims: int,
  num_classes: int | None,
  require_label: bool,
) -> dict:
  """Validates one example and returns it unchanged.

  Args:
    example: `image: [*spatial, C]`, optional `label: [*spatial]`.
    where: names the example in errors (file path or `source[index]`).
    spatial_dims: 2 or 3.
    num_classes: labels must lie in `[0, num_classes)`; None skips the range check.
    require_label: whether a missing `label` is an error.

  Raises:
    DataError: on a missing key, wrong rank, non-finite pixels, label shape mismatch or labels
      out of range.
  """
  if "image" not in example:
    raise DataError(f"{where}: example has no 'image' (keys: {sorted(example)}).")
  image = np.asarray(example["image"])
  if image.ndim != spatial_dims + 1:
    raise DataError(
      f"{where}: image has shape {image.shape} (rank {image.ndim}); expected rank "
      f"{spatial_dims + 1} = {spatial_dims} spatial dims + channels, channel-last."
    )
  if not np.issubdtype(image.dtype, np.number):
    raise DataError(f"{where}: image dtype {image.dtype} is not numeric.")
  if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
    bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
    raise DataError(f"{where}: image has {bad} NaN/Inf pixel values.")
  if "label" not in example:
    if require_label:
      raise DataError(f"{where}: example has no 'label' but this method needs labels.")
    return example
  label = np.asarray(example["label"])
  if label.shape != image.shape[:-1]:
    raise DataError(
      f"{where}: label shape {label.shape} does not match image spatial shape {image.shape[:-1]}."
    )
  if not (np.issubdtype(label.dtype, np.number) or np.issubdtype(label.dtype, np.bool_)):
    raise DataError(f"{where}: label dtype {label.dtype} is not numeric.")
  if not np.issubdtype(label.dtype, np.integer):
    if not np.all(np.isfinite(label)) or np.any(label != np.round(label)):
      raise DataError(f"{where}: label has non-integer values (dtype {label.dtype}).")
  if num_classes is not None and label.size:
    low, high = int(label.min()), int(label.max())
    if low < 0 or high >= num_classes:
      raise DataError(
        f"{where}: label values span [{low}, {high}] but must lie in [0, {num_classes - 1}] "
        f"for num_classes={num_classes}."
      )
  return example


def squeeze_single_slice(example: dict, spatial_dims: int) -> dict:
  """A 2-D run reads a one-slice volume as an image: `[H, W, 1, C] → [H, W, C]`.

  Every array of the example with the image's spatial shape `[H, W, 1]` (label, masks) loses the
  depth axis too. Anything else is returned unchanged (and `check_example` judges it).

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.data.validation import squeeze_single_slice
    >>> example = {"image": np.zeros((4, 5, 1, 2)), "label": np.zeros((4, 5, 1), int)}
    >>> {k: v.shape for k, v in squeeze_single_slice(example, 2).items()}
    {'image': (4, 5, 2), 'label': (4, 5)}
  """
  image = example.get("image")
  if spatial_dims != 2 or image is None or np.ndim(image) != 4 or np.shape(image)[2] != 1:
    return example
  spatial = np.shape(image)[:3]
  out = {}
  for key, value in example.items():
    shape = np.shape(value)
    if key == "image":
      out[key] = np.asarray(value)[:, :, 0]
    elif len(shape) >= 3 and shape[:3] == spatial:
      out[key] = np.asarray(value)[:, :, 0]
    else:
      out[key] = value
  return out
