r"""Retrieval throughput: queries per second of the exact blocked top-k search, by block size.

  python -m benchmarks.retrieval_throughput --database=1000000 --block_sizes=16384,65536,262144
  python -m benchmarks.retrieval_throughput --database=1000000 --out=benchmarks/results/retrieval.md

A random float32 database (`--database` × `--dim`, unit-normalised) and `--queries` random
queries; `retrieval/index.exact_top_k` (cosine, `--k`) is run once per block size to compile,
then `--repeats` times timed end to end (host → device block copies included). Prints (and with
`--out`, appends) a Markdown table: seconds per search, queries/s, database rows scored per
second. The first block size's result is checked against every other one (same indices).
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import app, flags

from mlsup_jax.retrieval.index import exact_top_k


def define_flags() -> None:
  """The command-line flags (defined on demand: tests import this module next to others)."""
  flags.DEFINE_integer("database", 1_000_000, "Database rows.")
  flags.DEFINE_integer("dim", 128, "Embedding width.")
  flags.DEFINE_integer("queries", 1000, "Queries per search.")
  flags.DEFINE_integer("k", 100, "Results per query.")
  flags.DEFINE_list("block_sizes", ["16384", "65536", "262144"], "Database rows per block.")
  flags.DEFINE_integer("repeats", 2, "Timed searches per block size.")
  flags.DEFINE_string("out", "", "Markdown file to append the table to (optional).")


def measure(database, queries, k: int, block_sizes, repeats: int) -> list[dict]:
  """One row per block size: median seconds per search and throughputs; indices must agree."""
  rows, reference = [], None
  for block in block_sizes:
    _, index = exact_top_k(queries, database, k, block_size=block)  # compile + warm up
    if reference is None:
      reference = index
    elif not np.array_equal(index, reference):
      raise AssertionError(f"block_size={block} returned different neighbours.")
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      exact_top_k(queries, database, k, block_size=block)
      times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    rows.append(
      {
        "block_size": int(block),
        "seconds": seconds,
        "queries_per_s": len(queries) / seconds,
        "rows_per_s": len(queries) * len(database) / seconds,
      }
    )
  return rows


def markdown(rows: list[dict], n: int, dim: int, q: int, k: int) -> str:
  device = jax.devices()[0]
  lines = [
    f"Exact top-{k} cosine search, {q} queries against {n:,} × {dim} float32 embeddings on "
    f"{device.device_kind} ({device.platform}, {os.cpu_count()} cores; load "
    f"{os.getloadavg()[0]:.1f}):",
    "",
    "| block size | s per search | queries/s | query·rows/s |",
    "|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
      f"| {r['block_size']:,} | {r['seconds']:.2f} | {r['queries_per_s']:.0f} | "
      f"{r['rows_per_s']:.3g} |"
    )
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  f = flags.FLAGS
  rng = np.random.default_rng(0)
  database = rng.standard_normal((f.database, f.dim), dtype=np.float32)
  database /= np.linalg.norm(database, axis=1, keepdims=True)
  queries = rng.standard_normal((f.queries, f.dim), dtype=np.float32)
  rows = measure(database, queries, f.k, [int(b) for b in f.block_sizes], f.repeats)
  table = markdown(rows, f.database, f.dim, f.queries, f.k)
  print(table)
  if f.out:
    with open(f.out, "a") as out:
      out.write("\n" + table)


if __name__ == "__main__":
  define_flags()
  app.run(main)
