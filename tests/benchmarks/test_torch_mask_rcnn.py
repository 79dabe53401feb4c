"""torchvision's Mask R-CNN leg has our network's structure (PyTorch is optional: skipped in CI)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from configs import mask_rcnn as mask_rcnn_config
from mlsup_jax.nn import build_model
from mlsup_jax.nn.mask_rcnn import MaskRCNN

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("depth", [41, 50, 65])
def test_parameter_counts_differ_only_by_torchvisions_background_box_and_mask_outputs(depth):
  from benchmarks.torch_mask_rcnn import build_torch_mask_rcnn, import_torchvision

  torchvision, _ = import_torchvision(torch)
  config = mask_rcnn_config.get_config(f"full,depth={depth}")
  model = build_model(config.model)
  shapes = jax.eval_shape(
    lambda k: model.init(k, jnp.zeros((1, 64, 64, 3)), method=MaskRCNN.initialize),
    jax.random.key(0),
  )
  ours = sum(x.size for x in jax.tree.leaves(shapes))
  theirs = sum(
    p.numel() for p in build_torch_mask_rcnn(torch, torchvision, config, 512).parameters()
  )
  # torchvision predicts boxes per class, background included (8 outputs, ours 4: one object
  # class) and one mask per class (2 channels, ours 1): (1024 + 1) · 4 + (256 + 1) · 1.
  assert theirs - ours == 1025 * 4 + 257


def test_one_torchvision_train_step_runs_at_a_tiny_size():
  from benchmarks.torch_mask_rcnn import benchmark_torch_mask_rcnn

  config = mask_rcnn_config.get_config("full,depth=41")
  with config.unlocked():
    config.data.eval_source.num_droplets = 4
    config.data.eval_source.droplet_radius = 6.0
    config.model.pre_nms_train = 200
    config.model.post_nms_train = 100
  report = benchmark_torch_mask_rcnn(config, 1, warmup=0, iters=1, image_shape=(64, 64, 3))
  assert report["step_ms_median"] > 0 and report["torchvision_ops"] in ("c++", "pure-pytorch")
