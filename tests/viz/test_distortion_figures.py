"""The TEND distortion gallery is written as a non-empty PNG."""

import numpy as np
import pytest

from mlsup_jax.viz.distortions import save_distortion_gallery

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("preset, shape", [("rsna", (48, 48)), ("ivc", (40, 56, 1))])
def test_save_distortion_gallery(tmp_path, preset, shape):
  rng = np.random.default_rng(0)
  image = rng.uniform(size=shape).astype(np.float32)
  path = tmp_path / "sub" / f"{preset}.png"
  assert save_distortion_gallery(str(path), image, preset) == str(path)
  data = path.read_bytes()
  assert data[:8] == PNG_MAGIC and len(data) > 5_000


def test_save_distortion_gallery_unknown_preset(tmp_path):
  with pytest.raises(KeyError, match="isic"):
    save_distortion_gallery(str(tmp_path / "x.png"), np.zeros((8, 8)), "isic")
