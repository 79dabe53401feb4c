"""A retrieval evaluation set: queries then database, each example flagged `query` (1 / 0).

`QueryDatabaseSource(queries=…, database=…)` concatenates two sources (configs or built) and adds
`query: []` int32 to every example, so one evaluation pass embeds both and the method splits
them by the flag (`retrieval/evaluation.split_queries`). With the phantoms, queries and database
come from disjoint splits (e.g. `test` and `val`), so no query is in the database.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlsup_jax.data.sources import as_source


class QueryDatabaseSource:
  """Examples `0 … Q−1` are the queries, `Q … Q+N−1` the database (module docstring).

  Example:
    >>> from mlsup_jax.data.sources import build_source
    >>> source = build_source({"name": "query_database",
    ...   "queries": {"name": "phantom_multi_finding_radiograph", "split": "test", "num_cases": 2,
    ...               "image_size": 32},
    ...   "database": {"name": "phantom_multi_finding_radiograph", "split": "val", "num_cases": 3,
    ...                "image_size": 32}})
    >>> len(source), [int(source[i]["query"]) for i in range(5)]
    (5, [1, 1, 0, 0, 0])

  Args:
    queries: the query source (config or built).
    database: the database source.

  Raises:
    ValueError: an empty query set or database.
  """

  def __init__(self, queries, database):
    self.queries, self.database = as_source(queries), as_source(database)
    if not len(self.queries) or not len(self.database):
      raise ValueError(
        f"queries ({len(self.queries)}) and database ({len(self.database)}) must be non-empty."
      )
    self.case_ids = [f"query/{i}" for i in range(len(self.queries))] + [
      f"database/{i}" for i in range(len(self.database))
    ]
    self.class_names = getattr(self.database, "class_names", None)

  def __len__(self) -> int:
    return len(self.queries) + len(self.database)

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"Index {index} out of range for QueryDatabaseSource of length {len(self)}.")
    index %= len(self)
    is_query = index < len(self.queries)
    example = self.queries[index] if is_query else self.database[index - len(self.queries)]
    return {**example, "query": np.int32(is_query)}
