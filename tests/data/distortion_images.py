"""Test images for the distortion tests (`test_image_warps.py`, `test_distortions.py`)."""

import numpy as np


def radiograph(n: int, channels: int | None = None) -> np.ndarray:
  """A chest-radiograph-like phantom in [0.1, 1]: bright body, dark lungs, spine, ribs."""
  y, x = np.mgrid[0:n, 0:n] / (n - 1) * 2 - 1
  body = np.clip(1 - (x / 0.9) ** 2, 0, 1) ** 0.5 * 0.7 + 0.1
  lungs = np.exp(-((((np.abs(x) - 0.38) / 0.22) ** 2 + ((y + 0.05) / 0.5) ** 2) ** 2))
  spine = np.exp(-((x / 0.06) ** 2)) * 0.25
  ribs = 0.05 * (np.sin(22 * y) > 0.6) * (np.abs(x) < 0.75)
  image = np.clip(body - 0.5 * lungs + spine + ribs + 0.15 * (y + 1) / 2, 0, 1)
  image = image.astype(np.float32)
  return image if channels is None else np.repeat(image[..., None], channels, axis=-1)


def random_image(h=24, w=32, c=None, seed=0):
  rng = np.random.default_rng(seed)
  shape = (h, w) if c is None else (h, w, c)
  return rng.uniform(size=shape).astype(np.float32)
