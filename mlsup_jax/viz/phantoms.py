"""Figures of synthetic phantom examples: image, label and label overlay per row."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
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


# Overlay colours of label classes 1, 2, 3, … (background stays grey).
CLASS_COLOURS = np.asarray(
  [[0.9, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.4, 1.0], [1.0, 0.8, 0.1], [0.8, 0.3, 0.9]]
)


def save_patient_figure(source, path: str, patients=(0, 1), class_names=None) -> str:
  """Every slice of a few patients of a volume-sliced source: images above, labels overlaid.

  Args:
    source: a source whose examples carry `image [H, W, C]`, `label [H, W]` and `patient`
      (e.g. `phantom_cardiac`); its `patient_ids` attribute lists each example's patient.
    path: output PNG path.
    patients: which patients (rows of two: image, overlay).
    class_names: legend names of classes 0 … K−1 (default: the source's `CLASS_NAMES`).

  Returns:
    `path`.

  Example:
    >>> import tempfile, os
    >>> from mlsup_jax.data.phantoms.cardiac import CardiacPhantomSource
    >>> from mlsup_jax.viz.phantoms import save_patient_figure
    >>> source = CardiacPhantomSource(split="train", num_patients=2, slices=4, image_size=32)
    >>> out = save_patient_figure(source, os.path.join(tempfile.mkdtemp(), "p.png"))
    >>> os.path.getsize(out) > 0
    True
  """
  ids = np.asarray(source.patient_ids)
  names = class_names or getattr(source, "CLASS_NAMES", None)
  rows = []
  for patient in patients:
    indices = np.flatnonzero(ids == patient)
    if not len(indices):
      raise ValueError(f"save_patient_figure: no example of patient {patient}.")
    rows.append(indices)
  columns = max(len(r) for r in rows)
  fig, axes = plt.subplots(
    2 * len(rows), columns, figsize=(1.6 * columns, 3.3 * len(rows)), squeeze=False
  )
  for row, indices in enumerate(rows):
    for col in range(columns):
      top, bottom = axes[2 * row, col], axes[2 * row + 1, col]
      for ax in (top, bottom):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
      if col >= len(indices):
        continue
      example = source[int(indices[col])]
      image = np.clip(np.asarray(example["image"], np.float32)[..., 0], 0.0, 1.0)
      label = np.asarray(example["label"])
      overlay = np.repeat(image[..., None], 3, axis=-1)
      for k in range(1, int(label.max()) + 1):
        mask = label == k
        overlay[mask] = 0.4 * overlay[mask] + 0.6 * CLASS_COLOURS[(k - 1) % len(CLASS_COLOURS)]
      top.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
      bottom.imshow(overlay, interpolation="nearest")
      top.set_title(f"patient {patients[row]}, slice {col}", fontsize=7)
  if names is not None:
    handles = [
      matplotlib.patches.Patch(color=CLASS_COLOURS[(k - 1) % len(CLASS_COLOURS)], label=name)
      for k, name in enumerate(names)
      if k > 0
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
  fig.tight_layout(rect=(0, 0.04, 1, 1))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
