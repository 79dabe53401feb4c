"""Figure of group-robustness results: each method's accuracy per group (`metrics/groups.py`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_group_accuracies(reports: Mapping[str, dict], names: Sequence[str], path: str) -> str:
  """Bar chart of `reports[method]["accuracy/<group>"]` for every method and group.

  Example:
    >>> import os, tempfile
    >>> from mlsup_jax.viz.groups import save_group_accuracies
    >>> path = os.path.join(tempfile.mkdtemp(), "groups.png")
    >>> _ = save_group_accuracies({"ERM": {"accuracy/a": 0.9, "accuracy/b": 0.2}}, ["a", "b"], path)
    >>> os.path.exists(path)
    True

  Returns:
    `path` (parent folders are created).
  """
  fig, ax = plt.subplots(figsize=(8, 3.2))
  width = 0.8 / len(reports)
  for i, (method, report) in enumerate(reports.items()):
    values = [report[f"accuracy/{n}"] for n in names]
    ax.bar(np.arange(len(names)) + i * width, values, width, label=method)
  ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, fontsize=8)
  ax.set_ylabel("test accuracy")
  ax.set_ylim(0, 1)
  ax.legend(fontsize=7, ncol=len(reports), loc="lower center", bbox_to_anchor=(0.5, 1.0))
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
