"""The retrieval throughput benchmark runs and agrees across block sizes (small sizes)."""

import numpy as np

from benchmarks import retrieval_throughput


def test_measure_small():
  rng = np.random.default_rng(0)
  database = rng.standard_normal((500, 8)).astype(np.float32)
  queries = rng.standard_normal((10, 8)).astype(np.float32)
  rows = retrieval_throughput.measure(database, queries, 5, [64, 500], repeats=1)
  assert [r["block_size"] for r in rows] == [64, 500]
  assert all(r["queries_per_s"] > 0 for r in rows)
  assert "| 64 |" in retrieval_throughput.markdown(rows, 500, 8, 10, 5)
