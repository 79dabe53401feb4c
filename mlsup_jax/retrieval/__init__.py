"""Retrieval: exact top-k search over embedding databases (`index.py`); the metrics are in
`mlsup_jax/metrics/retrieval.py`."""
