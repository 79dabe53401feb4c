"""Figures of TEND's synthetic OOD: every option of a distortion preset applied to one image."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mlsup_jax.data.augmentation import distortions  # noqa: E402


def save_distortion_gallery(
  path: str, image: np.ndarray, preset: str = "rsna", include_unseen: bool = True, seed: int = 0
) -> str:
  """Saves the image and each option of `TEND_PRESETS[preset]` (and the unseen transforms).

  Args:
    path: output PNG path (parent folders are created).
    image: `[H, W]` or `[H, W, C]` grey image (first channel shown), any value range.
    preset: a key of `distortions.TEND_PRESETS`.
    include_unseen: add one panel per validation-only transform (`UNSEEN_TRANSFORMS`).
    seed: seed of the unseen transforms' random strengths.

  Returns:
    `path`.
  """
  image = np.asarray(image)
  options = distortions.TEND_PRESETS.get(preset)
  if options is None:
    raise KeyError(f"Unknown TEND preset {preset!r}. Known: {', '.join(distortions.TEND_PRESETS)}.")
  panels = [("original", image)]
  labels = distortions.distortion_names(preset)
  for k, (option, label) in enumerate(zip(options, labels, strict=True)):
    panels.append((f"{k}: {label}", distortions.apply_option(image, option)))
  if include_unseen:
    rng = np.random.default_rng(seed)
    for name in distortions.UNSEEN_TRANSFORMS:
      panels.append((f"unseen: {name}", distortions.unseen_transform(image, rng, name)))
  low, high = float(np.min(image)), float(np.max(image))
  cols = min(5, len(panels))
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
  for ax in axes.ravel():
    ax.set_axis_off()
  for ax, (title, panel) in zip(axes.ravel(), panels, strict=False):
    panel = np.asarray(panel)
    ax.imshow(panel[..., 0] if panel.ndim == 3 else panel, cmap="gray", vmin=low, vmax=high)
    ax.set_title(title, fontsize=7)
  fig.suptitle(f"TEND synthetic OOD, preset {preset!r}", fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
