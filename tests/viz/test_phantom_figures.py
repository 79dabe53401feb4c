"""Tests of the phantom figures."""

import matplotlib.image
import pytest

from mlsup_jax.data.phantoms.ivc_filter import IvcFilterPhantomSource
from mlsup_jax.data.phantoms.radiograph import ChestRadiographPhantomSource
from mlsup_jax.viz.phantoms import save_class_gallery


@pytest.mark.parametrize("source_class", [IvcFilterPhantomSource, ChestRadiographPhantomSource])
def test_class_gallery_has_one_column_per_class(tmp_path, source_class):
  source = source_class("train", 2, seed=0, image_size=32)
  path = save_class_gallery(source, str(tmp_path / "sub" / "gallery.png"), cases=2)
  image = matplotlib.image.imread(path)
  height, width = image.shape[:2]
  # 1.9 in per class column and 2.0 in per row at 90 dpi.
  assert width == round(1.9 * len(source.class_names) * 90) and height == round(2 * 2.0 * 90)
  assert image[..., :3].std() > 0.05


def test_class_gallery_rejects_no_rows(tmp_path):
  with pytest.raises(ValueError, match="cases"):
    save_class_gallery(IvcFilterPhantomSource("train", 1), str(tmp_path / "g.png"), cases=0)
