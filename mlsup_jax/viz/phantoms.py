"""Figures of synthetic phantom examples: image, label and label overlay per row."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_examples_figure(source, path: str, n: int = 4) -> str:
  """Saves `n` examples of a 2-D source, evenly spread over it, as one PNG.

  Each row shows the image, the label, and the image with the label overlaid in red.

  Args:
    source: random-access source whose examples have `image: [H, W, C]` (first channel shown,
      assumed in [0, 1]) and optionally `label: [H, W]`.
    path: output PNG path (parent folders are created).
    n: number of examples (fewer if the source is shorter).

  Returns:
    `path`.
  """
  count = min(int(n), len(source))
  if count < 1:
    raise ValueError("save_examples_figure: the source is empty or n < 1.")
  indices = np.unique(np.linspace(0, len(source) - 1, count).round().astype(int))
  fig, axes = plt.subplots(len(indices), 3, figsize=(10.5, 3.5 * len(indices)), squeeze=False)
  for row, index in enumerate(indices):
    example = source[int(index)]
    image = np.clip(np.asarray(example["image"], np.float32)[..., 0], 0.0, 1.0)
    label = np.asarray(example.get("label", np.zeros(image.shape)), np.float32) > 0
    overlay = np.repeat(image[..., None], 3, axis=-1)
    overlay[label] = 0.35 * overlay[label] + 0.65 * np.asarray([1.0, 0.1, 0.1])
    axes[row, 0].imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[row, 0].set_title(f"#{index} image")
    axes[row, 1].imshow(label, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[row, 1].set_title(f"label ({int(label.sum())} px)")
    axes[row, 2].imshow(overlay, interpolation="nearest")
    axes[row, 2].set_title("overlay")
    for ax in axes[row]:
      ax.set_xticks([])
      ax.set_yticks([])
  fig.tight_layout()
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
