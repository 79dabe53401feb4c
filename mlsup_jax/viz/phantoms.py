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


def save_class_gallery(source, path: str, cases: int = 3) -> str:
  """Saves the first `cases` cases of a labelled phantom rendered as every class, as one PNG.

  Row r is case r's patient, pose and exposure; column k renders it as class k, so the columns
  differ only in what the class changes (a finding, a device design).

  Args:
    source: a `LabelledPhantomSource` (`render(rng, class_id) -> [S, S]` in [0, 1],
      `class_names`, `seed`, `split`).
    path: output PNG path (parent folders are created).
    cases: number of rows, ≥ 1.

  Returns:
    `path`.
  """
  from mlsup_jax.data.phantoms.source_base import case_rng

  if int(cases) < 1:
    raise ValueError(f"save_class_gallery: cases must be ≥ 1, got {cases}.")
  names = source.class_names
  fig, axes = plt.subplots(
    int(cases), len(names), figsize=(1.9 * len(names), 2.0 * int(cases)), squeeze=False
  )
  for row in range(int(cases)):
    for column, name in enumerate(names):
      image = source.render(case_rng(source.seed, source.split, row), column)
      axes[row, column].imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
      axes[row, column].set_xticks([])
      axes[row, column].set_yticks([])
      if row == 0:
        axes[row, column].set_title(name.replace("_", " "), fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path
