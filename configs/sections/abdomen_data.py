"""`config.data` for a segmentation run on the abdominal CT phantom (MaxQuery, segmentation)."""

import ml_collections

from mlsup_jax.data.phantoms.abdomen import AbdomenPhantomSource


def phantom(image_size: int, spatial_dims: int, depth: int, **fields) -> dict:
  """A `phantom_abdomen` source section (split, case count etc. in `fields`)."""
  return {
    "name": "phantom_abdomen",
    "image_size": image_size,
    "spatial_dims": spatial_dims,
    "depth": depth,
    "seed": 0,
    **fields,
  }


def abdomen_data(
  *,
  image_size: int,
  spatial_dims: int,
  depth: int,
  num_train: int,
  num_test: int,
  batch_size: int,
  **phantom_fields,
) -> ml_collections.ConfigDict:
  """Training (`split=train`) and test (`split=test`) phantom slices or volumes, CT-windowed.

  `phantom_fields` go to both sources (e.g. `ood_fraction=0.0`: no held-out OOD subtypes).
  """

  def source(**fields):
    return phantom(image_size, spatial_dims, depth, **phantom_fields, **fields)

  return ml_collections.ConfigDict(
    {
      "train_source": source(split="train", num_cases=num_train),
      "eval_source": source(split="test", num_cases=num_test),
      "batch_size": batch_size,
      "seed": 0,
      "spatial_dims": spatial_dims,
      "num_classes": AbdomenPhantomSource.NUM_CLASSES,
      "class_names": AbdomenPhantomSource.CLASS_NAMES,
      "require_label": True,
      "train_transforms": ("ct_window",),
      "eval_transforms": ("ct_window",),
      # The standard abdominal soft-tissue window: HU → [0, 1].
      "window_level": 40.0,
      "window_width": 400.0,
      "worker_count": 0,
      "read_threads": 2,
    }
  )
