"""Figure of retrieval results: each query and its top-k database images with labels and scores."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _label_text(labels, names: Sequence[str] | None) -> str:
  labels = np.asarray(labels)
  if labels.dtype.kind in "US":  # a ready-made title
    return str(labels)
  if labels.ndim == 0:  # a single class
    return names[int(labels)] if names else str(int(labels))
  on = np.flatnonzero(labels)  # a multi-label vector
  if not len(on):
    return "no finding"
  return ", ".join(names[i] if names else str(i) for i in on)


def save_retrieval_figure(
  path: str,
  query_images: np.ndarray,
  database_images: np.ndarray,
  indices: np.ndarray,
  scores: np.ndarray,
  query_labels: np.ndarray,
  database_labels: np.ndarray,
  relevant: np.ndarray | None = None,
  label_names: Sequence[str] | None = None,
) -> str:
  """One row per query: the query, then its retrieved images, best first.

  Example:
    >>> import numpy as np, tempfile, os
    >>> from mlsup_jax.viz.retrieval import save_retrieval_figure
    >>> images = np.random.default_rng(0).random((6, 8, 8))
    >>> path = os.path.join(tempfile.mkdtemp(), "retrieval.png")
    >>> labels = np.array([0, 0, 1, 1, 0, 1])
    >>> _ = save_retrieval_figure(path, images[:1], images, np.array([[1, 2]]),
    ...                           np.array([[0.9, 0.5]]), np.array([0]), labels)
    >>> os.path.exists(path)
    True

  Args:
    path: output PNG (parent folders are created).
    query_images: `[Q, H, W]` or `[Q, H, W, C]` (first channel shown).
    database_images: `[N, H, W(, C)]`.
    indices, scores: `[Q, K]` from the search.
    query_labels: `[Q]` classes or `[Q, C]` label vectors (or `[Q]` strings: the titles);
      database_labels likewise `[N(, C)]`.
    relevant: optional `[Q, K]` bool: titles of relevant results in green, others in red.
    label_names: class names for the titles.

  Returns:
    `path`.
  """
  indices, scores = np.asarray(indices), np.asarray(scores)
  q, k = indices.shape

  def grey(image):
    image = np.asarray(image, np.float32)
    return image[..., 0] if image.ndim == 3 else image

  fig, axes = plt.subplots(q, k + 1, figsize=(1.8 * (k + 1), 2.0 * q), squeeze=False)
  for row in range(q):
    ax = axes[row, 0]
    ax.imshow(grey(query_images[row]), cmap="gray")
    ax.set_title(f"query\n{_label_text(query_labels[row], label_names)}", fontsize=7)
    for col in range(k):
      ax = axes[row, col + 1]
      index = int(indices[row, col])
      ax.imshow(grey(database_images[index]), cmap="gray")
      color = "black" if relevant is None else ("green" if relevant[row, col] else "red")
      ax.set_title(
        f"#{col + 1} {scores[row, col]:.3f}\n{_label_text(database_labels[index], label_names)}",
        fontsize=7,
        color=color,
      )
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path
