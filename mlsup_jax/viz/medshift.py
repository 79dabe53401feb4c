"""MedShift's dataset-quality figure: OTDD, accuracies and removed images per level."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_quality_figure(path: str, rows: Sequence[Mapping]) -> str:
  """Three panels over the levels (TOP k … TOP 1, left to right).

  Args:
    path: the PNG to write.
    rows: the matrix rows (`pipelines/medshift.py`): `level`, `otdd_distance_mean/std`,
      `retrained_accuracy`, `internal_accuracy`, `removed`, optional `removed_shifted`.

  Returns:
    `path`.
  """
  levels = [row["level"] for row in rows]
  x = np.arange(len(rows))
  fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
  mean = np.array([row["otdd_distance_mean"] for row in rows])
  std = np.array([row["otdd_distance_std"] for row in rows])
  axes[0].errorbar(x, mean, yerr=std, marker="o", capsize=3, color="tab:blue")
  axes[0].set_title("OTDD(internal, external level) ↓")
  for key, label, colour in (
    ("retrained_accuracy", "retrained on level, internal test", "tab:green"),
    ("internal_accuracy", "internal classifier on level", "tab:orange"),
  ):
    axes[1].plot(x, [row[key] for row in rows], marker="o", label=label, color=colour)
  axes[1].set_title("classifier accuracy ↑")
  axes[1].legend(fontsize=8)
  axes[2].bar(x - 0.2, [row["removed"] for row in rows], 0.4, label="removed", color="tab:grey")
  if all("removed_shifted" in row for row in rows):
    axes[2].bar(
      x + 0.2, [row["removed_shifted"] for row in rows], 0.4, label="shifted removed",
      color="tab:red",
    )  # fmt: skip
  axes[2].set_title("images removed")
  axes[2].legend(fontsize=8)
  for ax in axes:
    ax.set_xticks(x, levels)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
