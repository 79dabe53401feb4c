"""Test session setup: 8 fake CPU devices, fast compiles, a compilation cache, parsed absl flags.

XLA_FLAGS must be set before JAX initialises its backends, so this runs at import time.
"""

import os
import tempfile

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Subprocesses started by tests (kill/resume) share the same persistent compilation cache.
os.environ.setdefault(
  "MLSUP_JAX_COMPILATION_CACHE", os.path.join(tempfile.gettempdir(), "mlsup_jax_test_jit_cache")
)

import jax  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402

from mlsup_jax.core.compilation_cache import enable_compilation_cache  # noqa: E402

# grain's multi-worker loader reads absl flags; under pytest nobody parses them.
flags.FLAGS.mark_as_parsed()
enable_compilation_cache(os.environ["MLSUP_JAX_COMPILATION_CACHE"])


@pytest.fixture(scope="session")
def devices():
  assert len(jax.devices()) == 8, "conftest must force 8 CPU devices before JAX starts"
  return jax.devices()
