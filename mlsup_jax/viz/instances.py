"""Figures for instance segmentations: every object's outline over the image."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402


def instance_outlines(image, labels) -> np.ndarray:
  """`[H, W, 3]` float RGB: the image (grey or colour, in [0, 1]) with each object's outline in
  its own colour (a 20-colour cycle)."""
  image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
  rgb = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3].copy()
  labels = np.asarray(labels)
  colours = plt.get_cmap("tab20")(np.arange(20))[:, :3]
  edges = find_boundaries(labels, mode="inner")
  rgb[edges] = colours[labels[edges] % 20]
  return rgb


def save_instance_figure(path: str, image, panels: dict) -> str:
  """One panel per labelling (`{"title": labels}`), each object outlined over `image`.

  Example:
    >>> import numpy as np, tempfile, os
    >>> from mlsup_jax.viz.instances import save_instance_figure
    >>> labels = np.zeros((16, 16), int); labels[4:10, 4:10] = 1
    >>> path = os.path.join(tempfile.mkdtemp(), "f.png")
    >>> save_instance_figure(path, np.zeros((16, 16)), {"ours": labels}) == path
    True
  """
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
  for ax, (title, labels) in zip(axes[0], panels.items(), strict=True):
    ax.imshow(instance_outlines(image, labels))
    ax.set_title(f"{title} ({len(np.unique(labels)) - 1} objects)")
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
