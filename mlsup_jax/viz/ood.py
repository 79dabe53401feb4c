"""Figures for OOD detection: ROC/PR curves of several methods, and per-case OOD panels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from mlsup_jax.metrics import ood as ood_metrics  # noqa: E402

# Class colours (tab10 without pink/magenta, which is reserved for the OOD outline).
_CLASS_COLOURS = np.array(
  [
    (0.12, 0.47, 0.71),  # blue
    (1.00, 0.50, 0.05),  # orange
    (0.17, 0.63, 0.17),  # green
    (0.84, 0.15, 0.16),  # red
    (0.58, 0.40, 0.74),  # purple
    (0.55, 0.34, 0.29),  # brown
    (0.74, 0.74, 0.13),  # olive
    (0.09, 0.75, 0.81),  # cyan
    (0.50, 0.50, 0.50),  # grey
  ]
)
OOD_COLOUR = (1.0, 0.0, 1.0)  # magenta outline of the OOD lesion
# Hue family per query group (background / organ / tumour, then extras).
_GROUP_CMAPS = ("Blues", "Greens", "Reds", "Purples", "Oranges", "Greys")
_DEFAULT_GROUP_NAMES = ("background", "organ", "tumour")
_MAX_CURVE_POINTS = 4000


def _thin(x: np.ndarray, y: np.ndarray, grid: int = 1000) -> tuple[np.ndarray, np.ndarray]:
  """Drops curve points that do not move on a `grid`-cell raster (2M-point curves plot fast)."""
  cells = np.round(np.stack([x, y], axis=1) * grid)
  keep = np.r_[True, np.any(np.diff(cells, axis=0) != 0, axis=1)]
  keep[-1] = True
  idx = np.flatnonzero(keep)
  if idx.size > _MAX_CURVE_POINTS:
    idx = idx[np.linspace(0, idx.size - 1, _MAX_CURVE_POINTS).astype(int)]
  return x[idx], y[idx]


def save_roc_curves(
  path: str,
  curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
  title: str = "OOD detection",
) -> str:
  """ROC curves (left) and precision-recall curves (right) of several OOD scores.

  Args:
    path: output PNG path.
    curves: method name -> `(scores [*S], labels [*S])`, higher score = more OOD, label 1 = OOD;
      each method may use its own pixels. AUROC / AP appear in the legends; a method with one
      class only is listed as "n/a".
    title: figure title.

  Returns:
    `path`.
  """
  fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(11, 4.8))
  prevalences = []
  for i, (name, (scores, labels)) in enumerate(curves.items()):
    colour = f"C{i % 10}"
    report = ood_metrics.ood_report(scores, labels)
    total = report["num_pos"] + report["num_neg"]
    prevalences.append(report["num_pos"] / total)
    if np.isnan(report["auroc"]):
      ax_roc.plot([], [], color=colour, label=f"{name} (n/a: one class)")
      continue
    fpr, tpr, _ = ood_metrics.roc_curve(scores, labels, drop_intermediate=True)
    ax_roc.plot(
      *_thin(fpr, tpr),
      color=colour,
      label=f"{name} (AUROC {report['auroc']:.3f}, FPR95 {report['fpr95']:.3f})",
    )
    precision, recall, _ = ood_metrics.precision_recall_curve(scores, labels)
    x, y = _thin(recall, precision)
    ax_pr.plot(
      x, y, color=colour, drawstyle="steps-post", label=f"{name} (AP {report['aupr']:.3f})"
    )
  ax_roc.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.6", label="chance")
  ax_roc.axhline(0.95, ls=":", lw=0.8, color="0.4")
  ax_roc.set(xlabel="FPR (ID flagged as OOD)", ylabel="TPR (OOD detected)", title="ROC")
  if prevalences and np.allclose(prevalences, prevalences[0]):
    ax_pr.axhline(prevalences[0], ls="--", lw=0.8, color="0.6", label="chance")
  ax_pr.set(xlabel="recall (OOD)", ylabel="precision (OOD)", title="precision-recall, OOD positive")
  for ax in (ax_roc, ax_pr):
    ax.set(xlim=(0, 1), ylim=(0, 1.01))
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
  ax_roc.legend(fontsize=7, loc="lower right")
  ax_pr.legend(fontsize=7, loc="upper right")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def _class_rgba(label_map: np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """`[H, W]` integer classes -> `[H, W, 4]` RGBA; class 0 (background) is transparent."""
  rgba = np.zeros((*label_map.shape, 4))
  fg = label_map > 0
  rgba[fg, :3] = _CLASS_COLOURS[(label_map[fg] - 1) % len(_CLASS_COLOURS)]
  rgba[fg, 3] = alpha
  return rgba


def _query_colours(num_queries: int, group_of_query: np.ndarray | None) -> np.ndarray:
  """`[N, 3]` RGB per query: a hue family per group with graded lightness, else tab20."""
  if group_of_query is None:
    return plt.get_cmap("tab20")(np.arange(num_queries) % 20)[:, :3]
  colours = np.zeros((num_queries, 3))
  for g in np.unique(group_of_query):
    members = np.flatnonzero(group_of_query == g)
    cmap = plt.get_cmap(_GROUP_CMAPS[int(g) % len(_GROUP_CMAPS)])
    shades = np.linspace(0.35, 0.9, members.size) if members.size > 1 else np.array([0.65])
    colours[members] = cmap(shades)[:, :3]
  return colours


def save_ood_figure(
  path: str,
  images,
  labels,
  predictions,
  ood_masks,
  heatmaps,
  assignments,
  group_of_query=None,
  class_names: Sequence[str] | None = None,
  titles: Sequence[str] | None = None,
  group_names: Sequence[str] | None = None,
  heatmap_label: str = "OOD score",
  heatmap_range: str | tuple[float, float] = "row",
) -> str:
  """One row per case: image, ground truth, prediction, OOD heat-map and query-assignment map.

  The OOD lesion is outlined in magenta on the ground truth and prediction panels and in cyan on
  the heat-map. By default each heat-map row has its own colour scale (1st-99th percentile of
  that case); use `heatmap_range="shared"` to compare score levels across cases.

  Args:
    path: output PNG path.
    images: `[C, H, W]` grey images already windowed to [0, 1].
    labels: `[C, H, W]` integer inlier ground truth (0 = background).
    predictions: `[C, H, W]` integer predicted classes.
    ood_masks: `[C, H, W]` binary masks of the OOD lesion (all zero for an inlier case).
    heatmaps: `[C, H, W]` per-pixel OOD scores, higher = more OOD (e.g. `maxquery`).
    assignments: `[C, H, W]` integer argmax query index per pixel, or None for a per-pixel
      classifier (the query column is left out).
    group_of_query: optional `[N]` group index per query (0 background, 1 organ, 2 tumour, ...);
      if given, queries are coloured by group hue family.
    class_names: optional `[K]` class names, background first, for the legend.
    titles: optional `[C]` row titles (e.g. case ids).
    group_names: optional names of the query groups (default background / organ / tumour).
    heatmap_label: colour-bar label.
    heatmap_range: `"row"` (per-case 1st-99th percentile), `"shared"` (the same over all cases)
      or a fixed `(vmin, vmax)`.

  Returns:
    `path`.
  """
  has_queries = assignments is not None
  if not has_queries:  # A per-pixel classifier: no query column.
    assignments = np.zeros_like(np.asarray(labels))
  arrays = [np.asarray(a) for a in (images, labels, predictions, ood_masks, heatmaps, assignments)]
  images, labels, predictions, ood_masks, heatmaps, assignments = arrays
  if images.ndim != 3 or any(a.shape != images.shape for a in arrays):
    raise ValueError(f"all inputs must be [C, H, W] of one shape, got {[a.shape for a in arrays]}.")
  if titles is not None and len(titles) != len(images):
    raise ValueError(f"got {len(titles)} titles for {len(images)} cases.")
  groups = None if group_of_query is None else np.asarray(group_of_query).astype(int)
  num_queries = len(groups) if groups is not None else int(assignments.max()) + 1
  if assignments.min() < 0 or assignments.max() >= num_queries:
    raise ValueError(f"assignments must be query indices in [0, {num_queries}).")
  query_colours = _query_colours(num_queries, groups)
  num_classes = (
    len(class_names) if class_names is not None else int(max(labels.max(), predictions.max())) + 1
  )

  per_row = isinstance(heatmap_range, str) and heatmap_range == "row"
  shared_range = None if per_row else _heat_range(heatmaps.astype(np.float64), heatmap_range)

  n = len(images)
  columns = 5 if has_queries else 4
  fig, axes = plt.subplots(n, columns, figsize=(3.4 * columns, 3.3 * n + 0.8), squeeze=False)
  for row in range(n):
    image = np.clip(images[row].astype(np.float32), 0, 1)
    ood = ood_masks[row] > 0
    ax_img, ax_gt, ax_pred, ax_heat = axes[row][:4]
    ax_img.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax_img.set_title(titles[row] if titles is not None else f"case {row}")
    for ax, label_map, title in (
      (ax_gt, labels[row], "ground truth"),
      (ax_pred, predictions[row], "prediction"),
    ):
      ax.imshow(image, cmap="gray", vmin=0, vmax=1)
      ax.imshow(_class_rgba(label_map.astype(int)), interpolation="nearest")
      if ood.any():
        ax.contour(ood, levels=[0.5], colors=[OOD_COLOUR], linewidths=1.5)
      ax.set_title(title)
    heat = heatmaps[row].astype(np.float64)
    vmin, vmax = _heat_range(heat, "row") if per_row else shared_range
    im = ax_heat.imshow(heat, cmap="inferno", vmin=vmin, vmax=vmax)
    if ood.any():
      ax_heat.contour(ood, levels=[0.5], colors=["cyan"], linewidths=1.0)
    ax_heat.set_title(heatmap_label)
    fig.colorbar(im, ax=ax_heat, fraction=0.046, pad=0.04)
    if has_queries:
      axes[row][4].imshow(query_colours[assignments[row].astype(int)], interpolation="nearest")
      used = np.unique(assignments[row]).size
      axes[row][4].set_title(f"query assignment ({used}/{num_queries} used)")
    for ax in axes[row]:
      ax.set_xticks([])
      ax.set_yticks([])

  class_handles = [
    Patch(color=_CLASS_COLOURS[(k - 1) % len(_CLASS_COLOURS)], label=_name(class_names, k))
    for k in range(1, num_classes)
  ]
  class_handles.append(Line2D([], [], color=OOD_COLOUR, lw=2, label="OOD lesion"))
  # Two legends so class colours and query-group colours are not mistaken for each other.
  legend = fig.legend(
    handles=class_handles, loc="lower center", bbox_to_anchor=(0.3, 0), ncol=len(class_handles)
  )
  legend.set_title("classes", prop={"size": 9})
  if groups is not None:
    names = group_names or _DEFAULT_GROUP_NAMES
    query_handles = []
    for g in np.unique(groups):
      members = np.flatnonzero(groups == g)
      label = names[g] if g < len(names) else f"group {g}"
      colour = query_colours[members[len(members) // 2]]
      query_handles.append(Patch(color=colour, label=f"{label} ({members.size})"))
    legend = fig.legend(
      handles=query_handles, loc="lower center", bbox_to_anchor=(0.75, 0), ncol=len(query_handles)
    )
    legend.set_title("query groups", prop={"size": 9})
  fig.tight_layout(rect=(0, 0.8 / (3.3 * n + 0.8), 1, 1))
  fig.savefig(path, dpi=80)
  plt.close(fig)
  return path


def _name(class_names: Sequence[str] | None, k: int) -> str:
  return class_names[k] if class_names is not None else f"class {k}"


def _heat_range(heat: np.ndarray, mode: str | tuple[float, float]) -> tuple[float, float]:
  """Colour limits of a heat-map: 1st-99th percentile, or a fixed `(vmin, vmax)`."""
  if isinstance(mode, str):
    if mode not in ("row", "shared"):
      raise ValueError(f"heatmap_range must be 'row', 'shared' or (vmin, vmax), got {mode!r}.")
    vmin, vmax = (float(v) for v in np.percentile(heat, [1, 99]))
  else:
    vmin, vmax = (float(v) for v in mode)
  if vmax <= vmin:  # constant map: any non-empty range
    vmin, vmax = vmin - 0.5, vmin + 0.5
  return vmin, vmax
