"""OOD figures are written as non-empty PNGs."""

import numpy as np
import pytest

from mlsup_jax.viz.ood import save_ood_figure, save_roc_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
  data = path.read_bytes()
  assert data[:8] == PNG_MAGIC and len(data) > 5_000


def test_save_roc_curves(tmp_path):
  rng = np.random.default_rng(0)
  labels = rng.random(5_000) < 0.2
  curves = {
    "good": (rng.normal(size=5_000) + 2 * labels, labels),
    "tied": (np.round(rng.normal(size=5_000) + 0.5 * labels), labels.astype(int)),
    "one class": (rng.normal(size=10), np.zeros(10)),
  }
  path = tmp_path / "roc.png"
  assert save_roc_curves(str(path), curves, title="test") == str(path)
  _assert_png(path)


def _cases(c=2, h=24, w=24, n=8):
  rng = np.random.default_rng(1)
  images = rng.random((c, h, w))
  labels = rng.integers(0, 3, (c, h, w))
  preds = rng.integers(0, 3, (c, h, w))
  ood = np.zeros((c, h, w), bool)
  ood[0, 5:12, 5:12] = True  # case 1 has no OOD lesion
  heat = rng.normal(size=(c, h, w))
  assign = rng.integers(0, n, (c, h, w))
  return images, labels, preds, ood, heat, assign


@pytest.mark.parametrize("grouped", [False, True])
def test_save_ood_figure(tmp_path, grouped):
  images, labels, preds, ood, heat, assign = _cases()
  path = tmp_path / "ood.png"
  save_ood_figure(
    str(path),
    images,
    labels,
    preds,
    ood,
    heat,
    assign,
    group_of_query=np.array([0, 0, 0, 1, 1, 2, 2, 2]) if grouped else None,
    class_names=["background", "organ", "tumour"] if grouped else None,
    titles=["a", "b"] if grouped else None,
    heatmap_range="shared" if grouped else "row",
  )
  _assert_png(path)


def test_save_ood_figure_rejects_bad_shapes(tmp_path):
  images, labels, preds, ood, heat, assign = _cases()
  with pytest.raises(ValueError, match="C, H, W"):
    save_ood_figure(str(tmp_path / "x.png"), images, labels[:1], preds, ood, heat, assign)
  with pytest.raises(ValueError, match="query indices"):
    save_ood_figure(
      str(tmp_path / "x.png"), images, labels, preds, ood, heat, assign, group_of_query=[0, 1]
    )
