"""Train-step benchmark of torchvision's Mask R-CNN at our config's depth, sizes and counts.

`benchmark_torch_mask_rcnn(config, batch, ...)` builds `torchvision.models.detection.MaskRCNN`
on a bottleneck ResNet of `config.model.depth` (stages `DEPTHS[depth]`, GroupNorm, torchvision's
`BackboneWithFPN` at `fpn_channels`) with the config's anchors (one size per level, three
ratios), proposal counts, RPN / RoI sampling sizes, detections per image and box-head width; no
resizing (`min_size = max_size` = the image side). One step = forward with targets (the five
losses) + backward + AdamW, on phantom steatosis tiles' instances (boxes and full-image masks
given as torchvision wants them; our step derives them from the label map inside the jit).

torchvision's C++ ops must match the installed torch. Where they cannot load (a CUDA build of
torchvision next to a CPU torch, as on the development machine), `import_torchvision` registers
a pure-PyTorch greedy NMS as `torchvision::nms`, and torchvision's RoIAlign then runs its own
pure-PyTorch path: the report's `torchvision_ops` says which ran, since the pure ops are slower
than the C++ kernels.

PyTorch is optional (`pip install -e .[bench]` plus a matching torchvision), imported lazily.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from benchmarks.torch_kmax import _import_torch
from benchmarks.torch_kmax_models import count_parameters
from benchmarks.torch_report import timed_steps, torch_report
from mlsup_jax.data.phantoms.steatosis import SteatosisPhantomSource
from mlsup_jax.nn.mask_rcnn import DEPTHS

_LIBRARIES = []  # Keeps the fallback operator library alive.


def _greedy_nms(torch):
  def nms(dets, scores, iou_threshold: float):
    order = torch.argsort(scores, descending=True)
    boxes = dets[order]
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1e-9)
    keep = torch.zeros(len(order), dtype=torch.bool, device=dets.device)
    suppressed = torch.zeros_like(keep)
    for i in range(len(order)):
      if not suppressed[i]:
        keep[i] = True
        suppressed |= iou[i] > iou_threshold
    return order[keep]

  return nms


def import_torchvision(torch):
  """`(torchvision, "c++" | "pure-pytorch")` (module docstring)."""
  try:
    import torchvision

    return torchvision, "c++" if torchvision.extension._has_ops() else "pure-pytorch"
  except RuntimeError as error:
    if "torchvision::nms" not in str(error):
      raise
  for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
    del sys.modules[name]
  library = torch.library.Library("torchvision", "DEF")
  # torchvision registers fake kernels for these two at import; only `nms` is ever called here.
  for name in ("nms", "qnms"):
    library.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.impl(name, _greedy_nms(torch), "CompositeExplicitAutograd")
  _LIBRARIES.append(library)
  import torchvision
  import torchvision.ops.boxes

  torchvision.ops.boxes._assert_has_ops = lambda: None
  return torchvision, "pure-pytorch"


def build_torch_mask_rcnn(torch, torchvision, config, image_side: int):
  """torchvision's `MaskRCNN` matching `config.model` (module docstring)."""
  from torchvision.models.detection import MaskRCNN
  from torchvision.models.detection.anchor_utils import AnchorGenerator
  from torchvision.models.detection.backbone_utils import BackboneWithFPN
  from torchvision.models.resnet import Bottleneck, ResNet

  m = config.model
  if int(m.width) != 64:
    raise ValueError(f"torchvision's ResNet has width 64 only; got width {m.width}.")

  def group_norm(channels):
    return torch.nn.GroupNorm(min(int(m.norm_groups), channels), channels)

  resnet = ResNet(Bottleneck, list(DEPTHS[int(m.depth)]), norm_layer=group_norm)
  backbone = BackboneWithFPN(
    resnet,
    return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
    in_channels_list=[256, 512, 1024, 2048],
    out_channels=int(m.fpn_channels),
  )
  anchors = AnchorGenerator(
    sizes=tuple((int(s),) for s in m.anchor_sizes),
    aspect_ratios=(tuple(float(r) for r in m.anchor_ratios),) * len(m.anchor_sizes),
  )
  return MaskRCNN(
    backbone,
    num_classes=2,
    min_size=image_side,
    max_size=image_side,
    rpn_anchor_generator=anchors,
    rpn_pre_nms_top_n_train=int(m.pre_nms_train),
    rpn_post_nms_top_n_train=int(m.post_nms_train),
    rpn_nms_thresh=float(m.rpn_nms_train),
    rpn_batch_size_per_image=int(m.rpn_anchors_per_image),
    box_batch_size_per_image=int(m.rois_per_image),
    box_positive_fraction=float(m.roi_positive_fraction),
    box_detections_per_img=int(m.detections),
  )


def phantom_targets(torch, dev, count: int, side: int, radius: float, droplets: int):
  """`(images [count, 3, side, side], targets)` from steatosis phantom tiles (exact instances)."""
  source = SteatosisPhantomSource(
    num_cases=count, image_size=side, droplet_radius=radius, num_droplets=droplets
  )
  images, targets = [], []
  for index in range(count):
    case = source[index]
    label = case["label"]
    ids = [i for i in np.unique(label) if i > 0]
    masks = np.stack([label == i for i in ids]).astype(np.uint8)
    boxes = []
    for mask in masks:
      rows, cols = np.nonzero(mask)
      boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    images.append(torch.as_tensor(np.moveaxis(case["image"], -1, 0), device=dev))
    targets.append(
      {
        "boxes": torch.as_tensor(np.asarray(boxes, np.float32), device=dev),
        "labels": torch.ones(len(ids), dtype=torch.int64, device=dev),
        "masks": torch.as_tensor(masks, device=dev),
      }
    )
  return torch.stack(images), targets


def benchmark_torch_mask_rcnn(
  config,
  batch: int,
  warmup: int = 2,
  iters: int = 5,
  device: str = "cpu",
  image_shape: Sequence[int] | None = None,
) -> dict:
  """Times torchvision's Mask R-CNN train step at the JAX leg's shapes (module docstring)."""
  try:
    torch = _import_torch(device)
    torchvision, ops = import_torchvision(torch)
  except ImportError:
    return {"leg": "torch", "skipped": "torch / torchvision not installed"}
  torch.manual_seed(0)
  dev = torch.device(device)
  side = int(image_shape[0]) if image_shape is not None else 512
  model = build_torch_mask_rcnn(torch, torchvision, config, side).to(dev).train()
  optimizer = torch.optim.AdamW(
    model.parameters(),
    lr=config.optimizer.learning_rate,
    weight_decay=config.optimizer.weight_decay,
  )
  source = config.data.eval_source
  images, targets = phantom_targets(
    torch, dev, batch, side, float(source.droplet_radius), int(source.num_droplets)
  )

  def step():
    optimizer.zero_grad(set_to_none=True)
    losses = model(list(images), targets)
    loss = sum(losses.values())
    loss.backward()
    optimizer.step()

  times = timed_steps(torch, dev, step, warmup=warmup, iters=iters)
  report = torch_report(
    torch, dev, times=times, batch=batch, warmup=warmup, iters=iters, dtype="float32",
    layout="NCHW", parameters=count_parameters(model),
  )  # fmt: skip
  report["torchvision_ops"] = ops
  return report
