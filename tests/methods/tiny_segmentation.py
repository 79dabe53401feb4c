"""Test doubles shared by the noisy-label method tests (MCPM / MW-Net, PINT).

`TinySegNet` has UNet's constructor signature, so a config can name it in place of the U-Net and
compile in a fraction of the time; `noisy_example` draws images whose intensity tells the label.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mlsup_jax.losses.segmentation import cross_entropy


class TinySegNet(nn.Module):
  """A smooth two-layer per-pixel classifier (conv 3×3 → tanh → conv 1×1) with UNet's signature.

  Smooth activations keep central differences away from kinks; every dtype is respected, so a
  whole bilevel objective can run in float64 under `jax.enable_x64`.
  """

  num_classes: int
  features: Sequence[int] = (4,)
  spatial_dims: int = 2
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    x = jnp.tanh(nn.Conv(self.features[0], (3,) * self.spatial_dims, dtype=self.dtype)(x))
    return nn.Conv(self.num_classes, (1,) * self.spatial_dims, dtype=self.dtype)(x)


def noisy_example(
  rng: np.random.Generator, num_classes: int, size: int, batch: int, dtype=np.float32
) -> dict:
  """`label [B, S, S]` uniform in {0 … K−1}; `image [B, S, S, 1]` = label + N(0, 0.5²)."""
  label = rng.integers(0, num_classes, (batch, size, size)).astype(np.int32)
  image = (label[..., None] + rng.normal(0, 0.5, (batch, size, size, 1))).astype(dtype)
  return {"image": image, "label": label}


def assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
  """Leaf-wise `np.testing.assert_allclose` over two pytrees of the same structure; a NaN equals
  nothing (not even another NaN: two diverged runs are not "the same")."""
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, equal_nan=False), a, b
  )


def pixel_cross_entropy(logits, labels):
  """Per-pixel cross-entropy `[B, *S]` (the `reduction="none"` form of the library's term)."""
  return cross_entropy(outputs={"logits": logits}, batch={"label": labels}, reduction="none")[0]
