r"""OTDD wall time vs samples per side (`mlsup_jax.ot.otdd`, Gaussian label costs).

  python -m benchmarks.otdd_scaling --sizes=1000,2000,5000,10000 --out=benchmarks/results
  python -m benchmarks.otdd_scaling --sizes=10000,20000,40000 --classes=20 --dim=64  # GPU
  python -m benchmarks.otdd_scaling --sizes=2500,5000,10000,20000 --batch_size=256 --repeats=1
  python -m benchmarks.otdd_scaling --sizes=25000,50000,100000 --batch_size=256 --repeats=0

`--batch_size`: "auto" (otdd's default: dense costs up to 10240 points per side, online blocks
of 256 rows above), "dense", or a block size (online costs, never an n × m matrix in memory).

Data: two synthetic labelled sets of "embeddings" of norm `--feature_norm` (`--classes`
Gaussian class centres shared by both sets, within-class noise, B shifted before
normalisation); the ½-cost lies in [0, 2 · norm²] (0–18 at the default 3, so ε = 0.1 is
1/180 of its range). Per size: one cold call (compilation
+ run), then `--repeats` warm calls of the whole `otdd()` (class statistics, Bures costs, the
three Sinkhorn problems; the data stay on the host). Sinkhorn iterations depend on the data
and ε, not only on n, so the report gives them and the time per iteration beside the wall
time; the fitted exponents are least-squares slopes of log time vs log n.

Writes one entry per size into `<out>/<device_kind>_x<count>.json` (`benchmarks/report.py`;
"batch" = samples per side, "step ms" = one `otdd()` call, "compile s" = cold − median warm
call, "peak MiB" = XLA's memory analysis of the A–B Sinkhorn program) and regenerates
`<out>/RESULTS.md`.
"""

from __future__ import annotations

import importlib.metadata
import os
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks import report
from mlsup_jax.ot import SinkhornSettings, otdd
from mlsup_jax.ot import outer_problem as outer_lib
from mlsup_jax.ot.class_clouds import padded_size


def define_flags() -> None:
  """The script's flags; defined only when run as a script (benchmarks.run also has `--out`)."""
  flags.DEFINE_list("sizes", ["1000", "2000", "5000", "10000"], "Samples per side.")
  flags.DEFINE_integer("classes", 20, "Classes per dataset.")
  flags.DEFINE_integer("dim", 64, "Feature dimension.")
  flags.DEFINE_integer("repeats", 2, "Warm calls per size (0: time the cold call).")
  flags.DEFINE_float("feature_norm", 3.0, "Norm of every feature vector.")
  flags.DEFINE_string("out", "benchmarks/results", "Folder for the JSON and RESULTS.md.")
  flags.DEFINE_string("note", "", "Free text stored with the results (e.g. host load).")
  flags.DEFINE_string("batch_size", "auto", '"auto", "dense", or online block rows.')


def parse_batch_size(value: str) -> int | str | None:
  """`--batch_size` as otdd's argument: "auto", None (dense) or an int."""
  if value in ("auto", "dense"):
    return None if value == "dense" else value
  return int(value)


def synthetic_embeddings(
  n: int, classes: int, dim: int, seed: int, shift: float = 0.0, norm: float = 1.0
):
  """`n` features `[n, dim]` float32 of norm `norm` in `classes` balanced classes, `[n]`."""
  centres = np.random.default_rng(1234).normal(size=(classes, dim))  # Shared by A and B.
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % classes
  features = centres[labels] + 0.7 * rng.normal(size=(n, dim))
  features[:, 0] += shift * np.sqrt(dim)
  features *= norm / np.linalg.norm(features, axis=1, keepdims=True)
  return features.astype(np.float32), labels


def peak_bytes_of_cross_problem(
  n: int, dim: int, classes: int, batch_size: int | None = None
) -> int | None:
  """XLA's argument + output + temp − alias bytes of the compiled A–B Sinkhorn program."""
  m = padded_size(n)
  x = jax.ShapeDtypeStruct((m, dim), np.float32)
  index = jax.ShapeDtypeStruct((m,), np.int32)
  weight = jax.ShapeDtypeStruct((m,), np.float32)
  slots = padded_size(2 * classes)
  costs = jax.ShapeDtypeStruct((slots, slots), np.float32)
  settings = SinkhornSettings()
  lowered = outer_lib.cross_ot.lower(
    x, index, weight, x, index, weight, costs, 1.0, 1.0, 0.1, settings, batch_size, True
  )
  memory = lowered.compile().memory_analysis()
  if memory is None:
    return None
  return int(
    memory.argument_size_in_bytes
    + memory.output_size_in_bytes
    + memory.temp_size_in_bytes
    - memory.alias_size_in_bytes
  )


def benchmark_size(
  n: int, classes: int, dim: int, repeats: int, norm: float, batch_size="auto"
) -> dict:
  """Cold and warm wall times of `otdd()` at `n` samples per side, in the report's leg format.

  `batch_size` is otdd's: "auto", None (dense costs) or online block rows.
  """
  features_a, labels_a = synthetic_embeddings(n, classes, dim, seed=0, norm=norm)
  features_b, labels_b = synthetic_embeddings(n, classes, dim, seed=1, shift=0.1, norm=norm)

  def call():
    return otdd(features_a, labels_a, features_b, labels_b, max_samples=None, batch_size=batch_size)

  start = time.perf_counter()
  result = call()
  cold_s = time.perf_counter() - start
  warm = []
  for _ in range(repeats):
    start = time.perf_counter()
    result = call()
    warm.append(time.perf_counter() - start)
  blocks = result.settings["batch_size"]  # "auto" resolved.
  costs = "dense" if blocks is None else f"online, blocks of {blocks} rows"
  # `--repeats=0` (the largest sizes): the cold call is the figure; compilation (seconds) is
  # then counted in it.
  timed = warm or [cold_s]
  median = statistics.median(timed)
  device = jax.devices()[0]
  return {
    "leg": "jit",
    "batch_size": n,
    "padded_size": padded_size(n),
    "classes": classes,
    "dim": dim,
    "feature_norm": norm,
    "compile_s": max(cold_s - median, 0.0) if warm else None,
    "cold_call_s": cold_s,
    "step_ms_min": 1e3 * min(timed),
    "step_ms_median": 1e3 * median,
    "examples_per_s": 2 * n / median,
    "iterations": list(result.iterations),
    "ms_per_iteration": 1e3 * median / sum(result.iterations),
    "distance": result.distance,
    "divergence": result.divergence,
    "converged": result.converged,
    "flops_per_step": None,
    "tflops_per_s": None,
    "mfu": None,
    "memory": {"peak_bytes": peak_bytes_of_cross_problem(n, dim, classes, blocks)},
    "costs": costs,
    "cost_batch_size": blocks,
    "device_kind": device.device_kind,
    "device_count": 1,
    "platform": device.platform,
    "dtype": "float32",
    "iters": repeats,
    "ott_jax": importlib.metadata.version("ott-jax"),
    "note": f"one otdd() call = class stats + Bures (float64) + 3 Sinkhorn problems ({costs})",
  }


def fit_exponent(sizes, seconds) -> float:
  """Least-squares slope of log(seconds) vs log(sizes)."""
  return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def main(argv):
  del argv
  load_start = os.getloadavg()
  sizes = [int(s) for s in flags.FLAGS.sizes]
  legs = {}
  for n in sizes:
    legs[n] = benchmark_size(
      n, flags.FLAGS.classes, flags.FLAGS.dim, flags.FLAGS.repeats, flags.FLAGS.feature_norm,
      parse_batch_size(flags.FLAGS.batch_size),
    )  # fmt: skip
    leg = legs[n]
    print(
      f"n={n}: median {leg['step_ms_median'] / 1e3:.3f} s, cold {leg['cold_call_s']:.1f} s, "
      f"iterations {leg['iterations']}, {leg['ms_per_iteration']:.2f} ms/iteration, "
      f"distance {leg['distance']:.4f}, {leg['costs']}",
      flush=True,
    )
  if len(set(sizes)) > 1:
    time_exponent = fit_exponent(sizes, [legs[n]["step_ms_median"] for n in sizes])
    iteration_exponent = fit_exponent(sizes, [legs[n]["ms_per_iteration"] for n in sizes])
    scaling = (
      f"fit over n={sizes}: time ∝ n^{time_exponent:.2f}, time per Sinkhorn iteration ∝ "
      f"n^{iteration_exponent:.2f}"
    )
  else:  # One size: no slope to fit (the largest sizes are run one per process).
    scaling = f"one size (n={sizes[0]}): no scaling fit"
  print(scaling)
  env = report.environment(jax.devices()[:1])
  for n in sizes:
    legs[n]["scaling"] = scaling
    f = flags.FLAGS
    name = f"otdd_scaling n={n} classes={f.classes} dim={f.dim} norm={f.feature_norm:g}"
    if legs[n]["cost_batch_size"] is not None:
      name += f" online={legs[n]['cost_batch_size']}"
    note = " ".join(filter(None, [scaling + ".", flags.FLAGS.note]))
    path = report.write_results(flags.FLAGS.out, name, {"jit": legs[n]}, env, note, load_start)
  print(f"Wrote {path}")
  print(report.write_markdown(flags.FLAGS.out))


if __name__ == "__main__":
  define_flags()
  app.run(main)
