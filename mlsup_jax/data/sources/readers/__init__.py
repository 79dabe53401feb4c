"""Per-format readers behind `mlsup_jax.data.sources` (import the sources from there)."""
