"""The §3.1 study: clump splitting vs the watershed on the nuclei phantom, over phantom seeds.

For each seed, `fields` test fields of the nuclei phantom (`data/phantoms/nuclei.py`, that seed)
are segmented by both methods; per field the matching-based metrics (`metrics/instances.py`)
are computed on the whole field and **over clumped regions** (the reference nuclei that belong to
a clump, and the predicted objects with at least half their pixels on those nuclei, grown by
2 px), plus the thesis tables' definitions; seconds per image are measured per method. The
table gives the mean over fields for each seed, then mean ± std over seeds, and how many seeds
each ordering holds on.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from mlsup_jax.data.phantoms.nuclei import NucleiPhantomSource
from mlsup_jax.metrics.instances import instance_report, thesis_metrics
from mlsup_jax.nuclei.clump_splitting import SplitSettings, split_nuclei
from mlsup_jax.nuclei.watershed import watershed_nuclei

METHODS = {
  "watershed (marker-controlled)": lambda image: watershed_nuclei(image),
  "§3.1 clump splitting (geodesic curves)": lambda image: split_nuclei(image),
  "§3.1 clump splitting (Hessian walk)": lambda image: split_nuclei(
    image, settings=SplitSettings(curve="hessian")
  ),
  "§3.1 clump splitting (the code's gradient screening)": lambda image: split_nuclei(
    image, settings=SplitSettings(pair_screen="gradient")
  ),
}
METRICS = ("f1", "aji", "pq", "precision", "recall", "mean_matched_iou", "hausdorff")


def restrict_to(labels: np.ndarray, region: np.ndarray) -> np.ndarray:
  """`labels` keeping only the objects with at least half their pixels inside `region`."""
  ids, inverse = np.unique(labels, return_inverse=True)
  inside = np.bincount(inverse.ravel(), weights=region.ravel().astype(np.float64))
  total = np.bincount(inverse.ravel())
  keep = (inside / np.maximum(total, 1) >= 0.5) & (ids != 0)
  return np.where(keep[inverse.reshape(labels.shape)], labels, 0)


def evaluate_field(
  case: dict, prediction: np.ndarray, group_key: str = "clump"
) -> dict[str, float]:
  """Whole-field, clumped-region and thesis metrics of one field (`case[group_key] > 0`: the
  pixels of clumped objects — `clump` for nuclei, `cluster` for droplets)."""
  whole = instance_report(prediction, case["label"])
  clumps = case[group_key] > 0
  region = ndimage.binary_dilation(clumps, iterations=2)
  reference = np.where(clumps, case["label"], 0)
  clumped = instance_report(restrict_to(prediction, region), reference)
  thesis = thesis_metrics(prediction, case["label"])
  out = {k: whole[k] for k in METRICS}
  out.update({f"clumped/{k}": clumped[k] for k in METRICS})
  out.update({f"thesis/{k}": v for k, v in thesis.items()})
  return out


def field_means(per_field: list[dict[str, float]]) -> dict[str, float]:
  """Each metric's mean over the fields where it is finite (NaN where it never is)."""
  means = {}
  for key in per_field[0]:
    values = [f[key] for f in per_field if np.isfinite(f[key])]
    means[key] = float(np.mean(values)) if values else float("nan")
  return means


def nuclei_fields(seed: int, fields: int, image_size: int, radius: float) -> list[dict]:
  """The study's test fields of one phantom seed."""
  source = NucleiPhantomSource(
    split="test",
    num_cases=fields,
    image_size=image_size,
    nucleus_radius=radius,
    num_nuclei=int(24 * (image_size / 256) ** 2 * (12 / radius) ** 2),
    seed=seed,
  )
  return [source[i] for i in range(fields)]


def run_study(
  seeds=(0, 1, 2),
  fields: int = 8,
  image_size: int = 512,
  radius: float = 16.0,
  methods=None,
  make_fields=nuclei_fields,
  group_key: str = "clump",
):
  """`{method: {metric: [value per seed]}}` and `{method: seconds per image}` (module docstring).

  `methods` (name → `image -> labels`, default `METHODS`), `make_fields` (`(seed, fields, size,
  radius) -> cases`) and `group_key` let another instance task (the steatosis droplets) reuse the
  study.

  Example:
    >>> from mlsup_jax.pipelines.nuclei_study import run_study
    >>> results, seconds = run_study(seeds=(0,), fields=1, image_size=128, radius=8)
    >>> sorted(results)[0], "f1" in results["watershed (marker-controlled)"]
    ('watershed (marker-controlled)', True)
  """
  methods = METHODS if methods is None else methods
  results = {name: {} for name in methods}
  times = {name: [] for name in methods}
  for seed in seeds:
    cases = make_fields(seed, fields, image_size, radius)
    for name, segment in methods.items():
      per_field = []
      for case in cases:
        start = time.perf_counter()
        prediction = segment(case["image"])
        times[name].append(time.perf_counter() - start)
        per_field.append(evaluate_field(case, prediction, group_key))
      for key, value in field_means(per_field).items():
        results[name].setdefault(key, []).append(value)
  return results, {name: float(np.median(t)) for name, t in times.items()}


def render_markdown(
  results: dict,
  seconds: dict,
  image_size: int,
  baseline: str = "watershed (marker-controlled)",
  short: str = "watershed",
) -> str:
  """The tables: whole field, clumped regions, the thesis's definitions, speed, and the orderings
  of every method against `baseline` (named `short` in the lines)."""

  def cell(values):
    values = [v for v in values if np.isfinite(v)]
    if not values:
      return "—"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"

  lines = []
  for title, prefix, keys in (
    ("Whole fields", "", METRICS),
    ("Clumped regions", "clumped/", METRICS),
    ("The thesis's definitions (Table 3.1 / 3.2 style)", "thesis/",
     ("ap", "precision", "recall", "f1", "jaccard")),
  ):  # fmt: skip
    lines += [f"### {title}", "", "| method | " + " | ".join(keys) + " |"]
    lines.append("|---" * (len(keys) + 1) + "|")
    for name, metrics in results.items():
      lines.append(f"| {name} | " + " | ".join(cell(metrics[prefix + k]) for k in keys) + " |")
    lines.append("")
  lines += [f"### Seconds per {image_size}² image (median, one CPU core)", ""]
  lines += [f"- {name}: {s:.2f} s" for name, s in seconds.items()]
  base = results[baseline]
  lines += ["", "### Orderings (seeds on which they hold)", ""]
  for name in (n for n in results if n != baseline):
    for key in ("clumped/f1", "clumped/aji", "f1", "aji"):
      wins = sum(a > b for a, b in zip(results[name][key], base[key], strict=True))
      lines.append(f"- {name} > {short} on {key}: {wins} / {len(base[key])}")
  return "\n".join(lines) + "\n"
