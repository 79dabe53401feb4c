"""Feature spaces for OTDD: flattened raw pixels, or embeddings from any callable model.

OTDD's Gaussian label costs need a `[D, D]` covariance per class, so raw pixels are only
practical at small resolutions (the OTDD paper used 28×28 or 32×32); for larger images use an
embedding (e.g. a trained classifier's penultimate layer) — spec thesis_ch5_6 §2.6.4.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def flatten_pixels(images) -> np.ndarray:
  """`images: [N, ...]` (e.g. `[N, H, W, C]`) → `[N, H·W·C]` float32."""
  images = np.asarray(images)
  if images.ndim < 2:
    raise ValueError(f"images must be [N, ...] with N examples, got shape {images.shape}.")
  return images.reshape(images.shape[0], -1).astype(np.float32, copy=False)


def embed(images, model: Callable, *, batch_size: int = 256) -> np.ndarray:
  """Applies `model` to `images` in fixed-size batches and flattens its outputs.

  The last batch is padded (with copies of its first example) to `batch_size`, so a jitted
  `model` compiles once; the padded rows are dropped from the output.

  Args:
    images: `[N, ...]` inputs, as `model` expects them.
    model: `[B, ...]` → `[B, ...]` array-valued callable (e.g. a jitted Flax `apply` with bound
      params); outputs are flattened to `[B, F]`.
    batch_size: B.

  Returns:
    `[N, F]` float32 numpy features.
  """
  images = np.asarray(images)
  if images.ndim < 1 or images.shape[0] == 0:
    raise ValueError(f"images must be a non-empty [N, ...] array, got shape {images.shape}.")
  if batch_size < 1:
    raise ValueError(f"batch_size must be ≥ 1, got {batch_size}.")
  outputs = []
  for start in range(0, images.shape[0], batch_size):
    batch = images[start : start + batch_size]
    real = batch.shape[0]
    if real < batch_size:
      filler = np.repeat(batch[:1], batch_size - real, axis=0)
      batch = np.concatenate([batch, filler])
    result = np.asarray(model(batch))
    if result.shape[0] != batch_size:
      raise ValueError(
        f"model returned {result.shape[0]} rows for a batch of {batch_size}; it must map "
        "[B, ...] → [B, ...]."
      )
    outputs.append(result[:real].reshape(real, -1))
  return np.concatenate(outputs).astype(np.float32, copy=False)
