"""Persistent XLA compilation cache: repeated runs of the same step skip compilation."""

from __future__ import annotations

import jax


def enable_compilation_cache(directory: str | None) -> None:
  """Caches every compiled program under `directory` (None or "" leaves the cache off).

  On a CPU a train step can take tens of seconds to compile; with the cache, a resumed run or
  a re-run with the same shapes starts at once.
  """
  if not directory:
    return
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
