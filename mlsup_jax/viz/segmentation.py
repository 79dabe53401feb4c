"""Figures for segmentation results: image, ground truth, prediction and overlay per row."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_overlay_figure(path: str, *, images, labels, probs, threshold: float = 0.5) -> str:
  """One row per image: image, ground truth, probability map, overlay (TP green, FP red, FN blue).

  Args:
    path: output PNG path.
    images: `[N, H, W]` grey images scaled to [0, 1].
    labels: `[N, H, W]` binary ground truth.
    probs: `[N, H, W]` predicted probabilities.
    threshold: `p > threshold` is positive.
  """
  n = len(images)
  fig, axes = plt.subplots(n, 4, figsize=(12, 3 * n), squeeze=False)
  for row, (image, label, prob) in enumerate(zip(images, labels, probs, strict=True)):
    image = np.clip(np.asarray(image, np.float32), 0, 1)
    label, pred = np.asarray(label) > 0, np.asarray(prob) > threshold
    overlay = np.repeat(image[..., None], 3, axis=-1) * 0.7
    overlay[pred & label] = (0.1, 0.9, 0.1)
    overlay[pred & ~label] = (0.95, 0.1, 0.1)
    overlay[~pred & label] = (0.2, 0.4, 1.0)
    panels = [
      (image, "image", "gray"),
      (label, "ground truth", "gray"),
      (prob, "probability", "magma"),
    ]
    for col, (data, title, cmap) in enumerate(panels):
      axes[row, col].imshow(data, cmap=cmap, vmin=0, vmax=1)
      axes[row, col].set_title(title)
    axes[row, 3].imshow(overlay)
    axes[row, 3].set_title("TP green / FP red / FN blue")
    for ax in axes[row]:
      ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)
  return path
