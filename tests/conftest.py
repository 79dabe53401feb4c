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

import io  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402
from PIL import Image  # noqa: E402

from mlsup_jax.core.compilation_cache import enable_compilation_cache  # noqa: E402

# grain's multi-worker loader reads absl flags; under pytest nobody parses them.
flags.FLAGS.mark_as_parsed()
enable_compilation_cache(os.environ["MLSUP_JAX_COMPILATION_CACHE"])


@pytest.fixture(scope="session")
def devices():
  assert len(jax.devices()) == 8, "conftest must force 8 CPU devices before JAX starts"
  return jax.devices()


def png_bytes(array) -> bytes:
  """`array` (uint8 image) encoded as PNG."""
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """Builds `mlsup_tiny` (array_record) with TFDS alone: no TensorFlow is installed or needed.

  Notes: `dataset_info_from_configs` would look for package metadata next to this file, so the
  builder makes its `DatasetInfo` directly; `Image` features can't encode numpy arrays without
  TensorFlow (tf.image.encode_png), so they get PNG bytes; decoding uses PIL.
  """
  tfds = pytest.importorskip("tensorflow_datasets")

  # Unregistered: reading goes through the files on disk, as for a dataset prepared elsewhere.
  with tfds.core.registered.skip_registration():

    class MlsupTiny(tfds.core.GeneratorBasedBuilder):
      VERSION = tfds.core.Version("1.0.0")

      def _info(self):
        features = {
          "image": tfds.features.Image(shape=(6, 7, 1)),
          "mask": tfds.features.Image(shape=(6, 7, 1)),
          "label": tfds.features.ClassLabel(num_classes=3),
          "volume": tfds.features.Tensor(shape=(4, 4, 3, 1), dtype=np.float32),
          "name": tfds.features.Text(),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

      def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(3), "test": self._generate_examples(2)}

      def _generate_examples(self, n):
        for i in range(n):
          yield (
            i,
            {
              "image": png_bytes(np.full((6, 7), 50 * i, np.uint8)),
              "mask": png_bytes(np.full((6, 7), i, np.uint8)),
              "label": i,
              "volume": np.full((4, 4, 3, 1), i, np.float32),
              "name": f"case{i}",
            },
          )

  data_dir = tmp_path_factory.mktemp("tfds")
  MlsupTiny(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
  return str(data_dir)


def pytest_collection_modifyitems(config, items):
  """`@pytest.mark.study` tests run only with MLSUP_STUDY_TESTS=1 (CI's budget leaves them out;
  each names the results page whose claim it re-checks)."""
  del config
  if os.environ.get("MLSUP_STUDY_TESTS") == "1":
    return
  skip = pytest.mark.skip(reason="a study claim: run with MLSUP_STUDY_TESTS=1 (minutes)")
  for item in items:
    if "study" in item.keywords:
      item.add_marker(skip)
