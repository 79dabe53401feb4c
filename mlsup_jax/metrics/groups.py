"""Group-robustness metrics with the WILDS conventions (CFR, DFR, Waterbirds-style data).

* per-group accuracy: the accuracy over the examples of each group;
* **worst-group accuracy**: the minimum over groups;
* **adjusted average accuracy**: the per-group accuracies weighted by the groups' *training*
  proportions — the accuracy the model would have on the training distribution, which the
  balanced validation/test splits do not show (WILDS' Waterbirds `adj_acc_avg`);
* average accuracy: the plain accuracy over the evaluation examples.

Groups are used for reporting only: no method that claims to need no group labels reads them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["group_accuracies", "group_report"]


def group_accuracies(predictions, labels, groups, num_groups: int) -> np.ndarray:
  """`[num_groups]` accuracy per group.

  Args:
    predictions, labels, groups: `[N]` ints (groups in `[0, num_groups)`).
    num_groups: G.

  Raises:
    ValueError: mismatched shapes, a group id out of range, or an empty group (its accuracy is
      undefined; the worst-group accuracy would silently ignore it).
  """
  predictions, labels, groups = (np.asarray(a) for a in (predictions, labels, groups))
  if not predictions.shape == labels.shape == groups.shape or predictions.ndim != 1:
    raise ValueError(
      f"predictions {predictions.shape}, labels {labels.shape} and groups {groups.shape} must "
      "be equal [N] arrays."
    )
  if len(groups) and (groups.min() < 0 or groups.max() >= num_groups):
    raise ValueError(f"group ids must be in [0, {num_groups}), got {groups.min()}…{groups.max()}.")
  counts = np.bincount(groups, minlength=num_groups)
  if np.any(counts == 0):
    empty = np.flatnonzero(counts == 0).tolist()
    raise ValueError(f"group(s) {empty} have no examples: their accuracy is undefined.")
  correct = np.bincount(
    groups, weights=(predictions == labels).astype(np.float64), minlength=num_groups
  )
  return correct / counts


def group_report(
  predictions,
  labels,
  groups,
  train_group_counts: Sequence[float],
  group_names: Sequence[str] | None = None,
) -> dict[str, float]:
  """Worst-group, adjusted-average and average accuracy, and each group's accuracy.

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.metrics.groups import group_report
    >>> labels = np.array([0, 0, 1, 1]); groups = np.array([0, 1, 2, 3])
    >>> report = group_report(np.array([0, 1, 1, 1]), labels, groups, [45, 5, 5, 45])
    >>> report["worst_group_accuracy"], report["adjusted_average_accuracy"]
    (0.0, 0.95)

  Args:
    predictions, labels, groups: `[N]` ints.
    train_group_counts: `[G]` group sizes (or proportions) in the training split.
    group_names: names for the per-group keys (default: the group index).

  Returns:
    `worst_group_accuracy`, `adjusted_average_accuracy`, `average_accuracy`, `worst_group`
    (its index) and `accuracy/<group name>` per group.
  """
  weights = np.asarray(train_group_counts, np.float64)
  if weights.ndim != 1 or np.any(weights < 0) or weights.sum() <= 0:
    raise ValueError(f"train_group_counts must be [G] ≥ 0, not all 0; got {list(weights)}.")
  accuracies = group_accuracies(predictions, labels, groups, len(weights))
  names = list(group_names) if group_names is not None else [str(g) for g in range(len(weights))]
  report = {
    "worst_group_accuracy": float(accuracies.min()),
    "worst_group": float(np.argmin(accuracies)),
    "adjusted_average_accuracy": float(np.sum(accuracies * weights) / weights.sum()),
    "average_accuracy": float(np.mean(np.asarray(predictions) == np.asarray(labels))),
  }
  report.update({f"accuracy/{name}": float(a) for name, a in zip(names, accuracies, strict=True)})
  return report
