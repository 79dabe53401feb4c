"""Mask R-CNN in Flax with static shapes (He et al. 2017; thesis §3.2's droplet detector).

`MaskRCNN(image, train=..., instances=...)`:

* **backbone**: a bottleneck ResNet in torchvision's layout (stride in the 3×3 convolution) with
  the thesis code's depths — stages of 3, 4, N, 3 blocks where stage 4 is one projection block
  plus 2 / 5 / 10 identity blocks: `depth=41` (3, 4, 3, 3), `50` (3, 4, 6, 3), `65` (3, 4, 11, 3).
  GroupNorm instead of BatchNorm: the thesis fine-tuned COCO weights with frozen BatchNorm, we
  train from scratch (no weights can be downloaded), and GroupNorm is the from-scratch choice for
  detection at a few images per device (Wu & He 2018) — no batch statistics to shard;
* **FPN** P2–P5 (+ P6 by subsampling P5, for the RPN only), `fpn_channels` wide;
* **RPN**: one shared 3×3 head over the levels, anchors of one size per level (8 … 128 px, the
  thesis code's) and three ratios; proposals = top `pre_nms` scores → decoded, clipped → NMS
  (0.9 in training, 0.7 at inference, the thesis code's) → a fixed `post_nms` count;
* **heads**: RoIAlign 7×7 (box) and 14×14 (mask) over P2–P5 (FPN level rule), two fully
  connected layers → object / background logits and box deltas; four 3×3 convolutions + a 2×
  transposed convolution → 28×28 mask logits.

Training mode (`instances` = the `[B, H, W]` instance label map) samples anchors and RoIs (Flax
RNG stream `sampling`) and returns predictions with their targets (`detection/targets.py`), for
the loss terms of `losses/detection.py`. Evaluation mode returns `detections` fixed in number
(padding flagged by `valid`), their masks and the pasted instance map. There is one object class
(the data are instance maps without classes), so the class head is object vs background.

Pretrained weights: none can be downloaded here. The backbone's names follow torchvision's
ResNet (`layer{stage}_{block}/conv1…3`), so a user's converted ResNet-50 can be written into
`params["backbone"]` by name — the documented extension point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlsup_jax.detection import targets as targets_lib
from mlsup_jax.detection.anchors import pyramid_anchors
from mlsup_jax.detection.boxes import clip_boxes, decode
from mlsup_jax.detection.nms import nms
from mlsup_jax.detection.paste import paste_instances
from mlsup_jax.detection.roi_align import pyramid_roi_align

__all__ = ["DEPTHS", "BottleneckResNet", "MaskRCNN"]

# Depth → blocks per stage (the thesis code's `resnet_graph`: stage 4 = 1 + 2 / 5 / 10 blocks).
DEPTHS = {41: (3, 4, 3, 3), 50: (3, 4, 6, 3), 65: (3, 4, 11, 3)}
RPN_STRIDES = (4, 8, 16, 32, 64)
HEAD_STRIDES = (4, 8, 16, 32)


def _norm(channels: int, groups: int, dtype, name: str, zero: bool = False) -> nn.GroupNorm:
  return nn.GroupNorm(
    num_groups=min(groups, channels),
    dtype=dtype,
    scale_init=nn.initializers.zeros if zero else nn.initializers.ones,
    name=name,
  )


class Bottleneck(nn.Module):
  """1×1 → 3×3 (stride) → 1×1 (×4 channels) with GroupNorm and a projection when shapes change."""

  width: int
  strides: int
  groups: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    out = 4 * self.width
    conv = dict(use_bias=False, dtype=self.dtype)
    h = nn.Conv(self.width, (1, 1), name="conv1", **conv)(x)
    h = nn.relu(_norm(self.width, self.groups, self.dtype, "gn1")(h))
    h = nn.Conv(self.width, (3, 3), (self.strides,) * 2, padding=1, name="conv2", **conv)(h)
    h = nn.relu(_norm(self.width, self.groups, self.dtype, "gn2")(h))
    h = nn.Conv(out, (1, 1), name="conv3", **conv)(h)
    # The branch's last norm starts at zero (Goyal et al.): each block begins as an identity.
    h = _norm(out, self.groups, self.dtype, "gn3", zero=True)(h)
    if self.strides != 1 or x.shape[-1] != out:
      x = nn.Conv(out, (1, 1), (self.strides,) * 2, name="downsample_conv", **conv)(x)
      x = _norm(out, self.groups, self.dtype, "downsample_gn")(x)
    return nn.relu(h + x)


class BottleneckResNet(nn.Module):
  """`x [B, H, W, C]` → `[C2, C3, C4, C5]` at strides 4, 8, 16, 32 (channels 4w, 8w, 16w, 32w).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from mlsup_jax.nn.mask_rcnn import BottleneckResNet
    >>> net = BottleneckResNet(depth=41, width=4, groups=4)
    >>> x = jnp.zeros((1, 64, 64, 3))
    >>> [f.shape for f in net.apply(net.init(jax.random.key(0), x), x)]  # doctest: +SKIP
    [(1, 16, 16, 16), (1, 8, 8, 32), (1, 4, 4, 64), (1, 2, 2, 128)]
  """

  depth: int = 50
  width: int = 64
  groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x) -> list[jax.Array]:
    if self.depth not in DEPTHS:
      raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {self.depth}.")
    h = nn.Conv(self.width, (7, 7), (2, 2), padding=3, use_bias=False, dtype=self.dtype,
                name="conv1")(x.astype(self.dtype))  # fmt: skip
    h = nn.relu(_norm(self.width, self.groups, self.dtype, "gn1")(h))
    h = nn.max_pool(h, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    outputs = []
    for stage, blocks in enumerate(DEPTHS[self.depth]):
      for block in range(blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        h = Bottleneck(self.width * 2**stage, strides, self.groups, self.dtype,
                       name=f"layer{stage + 1}_{block}")(h)  # fmt: skip
      outputs.append(h)
    return outputs


class FeaturePyramid(nn.Module):
  """Top-down FPN: `[C2 … C5]` → `[P2 … P6]`, `channels` each (P6 = P5 subsampled by 2)."""

  channels: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array]) -> list[jax.Array]:
    laterals = [
      nn.Conv(self.channels, (1, 1), dtype=self.dtype, name=f"lateral{i + 2}")(f)
      for i, f in enumerate(features)
    ]
    merged = [laterals[-1]]
    for lateral in reversed(laterals[:-1]):
      above = jnp.repeat(jnp.repeat(merged[0], 2, axis=1), 2, axis=2)
      merged.insert(0, lateral + above[:, : lateral.shape[1], : lateral.shape[2]])
    levels = [
      nn.Conv(self.channels, (3, 3), padding=1, dtype=self.dtype, name=f"output{i + 2}")(m)
      for i, m in enumerate(merged)
    ]
    return levels + [levels[-1][:, ::2, ::2]]


class RegionProposalHead(nn.Module):
  """Shared over levels: 3×3 conv → objectness `[B, N]` and deltas `[B, N, 4]` (N = all anchors)."""

  channels: int
  anchors_per_location: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, levels: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
    shared = nn.Conv(self.channels, (3, 3), padding=1, dtype=self.dtype, name="shared")
    score = nn.Conv(self.anchors_per_location, (1, 1), dtype=self.dtype, name="objectness")
    delta = nn.Conv(4 * self.anchors_per_location, (1, 1), dtype=self.dtype, name="deltas")
    logits, deltas = [], []
    for level in levels:
      h = nn.relu(shared(level))
      batch = h.shape[0]
      logits.append(score(h).reshape(batch, -1))
      deltas.append(delta(h).reshape(batch, -1, 4))
    return (
      jnp.concatenate(logits, 1).astype(jnp.float32),
      jnp.concatenate(deltas, 1).astype(jnp.float32),
    )


class BoxHead(nn.Module):
  """Pooled `[..., 7, 7, C]` → two FC layers → class logits `[..., 2]` and deltas `[..., 4]`."""

  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled):
    h = pooled.reshape(*pooled.shape[:-3], -1)
    h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="fc1")(h))
    h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="fc2")(h))
    logits = nn.Dense(2, dtype=self.dtype, name="class_logits")(h)
    deltas = nn.Dense(4, dtype=self.dtype, kernel_init=nn.initializers.normal(1e-3),
                      name="deltas")(h)  # fmt: skip
    return logits.astype(jnp.float32), deltas.astype(jnp.float32)


class MaskHead(nn.Module):
  """Pooled `[R, 14, 14, C]` → four 3×3 convs → 2× transposed conv → logits `[R, 28, 28]`."""

  channels: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled):
    h = pooled
    for i in range(4):
      h = nn.relu(nn.Conv(self.channels, (3, 3), padding=1, dtype=self.dtype,
                          name=f"conv{i + 1}")(h))  # fmt: skip
    h = nn.relu(nn.ConvTranspose(self.channels, (2, 2), (2, 2), dtype=self.dtype,
                                 name="upsample")(h))  # fmt: skip
    return nn.Conv(1, (1, 1), dtype=self.dtype, name="logits")(h)[..., 0].astype(jnp.float32)


class MaskRCNN(nn.Module):
  """Mask R-CNN with fixed proposal, RoI and detection counts (module docstring).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from mlsup_jax.nn.mask_rcnn import MaskRCNN
    >>> # Compiles in ~15 s on a CPU: tests/methods/test_mask_rcnn.py runs the model.
    >>> model = MaskRCNN(depth=41, width=4, fpn_channels=8, norm_groups=4, head_hidden=16,
    ...                  pre_nms_test=64, post_nms_test=32, detections=8)
    >>> image = jnp.zeros((1, 64, 64, 3))
    >>> key = jax.random.key(0)
    >>> variables = model.init(key, image, method=MaskRCNN.initialize)  # doctest: +SKIP
    >>> out = model.apply(variables, image, train=False)  # doctest: +SKIP
    >>> out["boxes"].shape, out["mask_probs"].shape, out["instances"].shape  # doctest: +SKIP
    ((1, 8, 4), (1, 8, 28, 28), (1, 64, 64))

  Attributes:
    depth: 41, 50 or 65 (`DEPTHS`).
    width: the first stage's bottleneck width (64 = ResNet-50's).
    fpn_channels: channels of the pyramid and the mask head (256).
    norm_groups: GroupNorm groups (at most the channels).
    head_hidden: width of the box head's FC layers (1024).
    anchor_sizes: one per RPN level P2 … P6 (pixels).
    anchor_ratios: height / width ratios.
    pre_nms_train, post_nms_train, pre_nms_test, post_nms_test: proposals before / after the
      RPN's NMS.
    rpn_nms_train, rpn_nms_test: the RPN's NMS IoU thresholds.
    rpn_anchors_per_image: anchors sampled for the RPN loss.
    rois_per_image, roi_positive_fraction: RoIs sampled for the heads, at most this share
      positive; the mask branch reads the first `⌈rois · fraction⌉` (all positives).
    max_instances: object ids 1 … this are read from the instance map.
    detections: detections kept per image at inference (after NMS at `detection_nms`).
    detection_min_score: object probability a detection needs (0.5 = the thesis code's
      argmax-is-object rule with its DETECTION_MIN_CONFIDENCE = 0).
    mask_threshold: probability of a mask pixel.
    min_visible: a detection whose mask is less than this share visible after the better ones
      took their pixels is dropped (`detection/paste.py`).
    min_object_area: detections with fewer visible pixels are dropped.
    dtype: compute dtype of the convolutions and dense layers.
  """

  depth: int = 50
  width: int = 64
  fpn_channels: int = 256
  norm_groups: int = 32
  head_hidden: int = 1024
  anchor_sizes: Sequence[float] = (8, 16, 32, 64, 128)
  anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0)
  pre_nms_train: int = 2000
  post_nms_train: int = 1000
  pre_nms_test: int = 1000
  post_nms_test: int = 1000
  rpn_nms_train: float = 0.9
  rpn_nms_test: float = 0.7
  rpn_anchors_per_image: int = 256
  rois_per_image: int = 128
  roi_positive_fraction: float = 0.33
  max_instances: int = 200
  detections: int = 100
  detection_nms: float = 0.3
  detection_min_score: float = 0.5
  mask_threshold: float = 0.5
  min_visible: float = 0.5
  min_object_area: int = 0
  dtype: Any = jnp.float32

  def setup(self):
    self.backbone = BottleneckResNet(self.depth, self.width, self.norm_groups, self.dtype)
    self.fpn = FeaturePyramid(self.fpn_channels, self.dtype)
    self.rpn = RegionProposalHead(self.fpn_channels, len(self.anchor_ratios), self.dtype)
    self.box_head = BoxHead(self.head_hidden, self.dtype)
    self.mask_head = MaskHead(self.fpn_channels, self.dtype)

  def initialize(self, image: jax.Array) -> jax.Array:
    """Touches every submodule once on `image`'s shape without the detection logic (NMS,
    sampling): `model.init(key, image, method=MaskRCNN.initialize)` gives the same parameters'
    shapes as a full call at a fraction of the compile time."""
    levels = self.fpn(self.backbone(image))
    self.rpn(levels)
    self.box_head(jnp.zeros((1, 1, 7, 7, self.fpn_channels), image.dtype))
    self.mask_head(jnp.zeros((1, 14, 14, self.fpn_channels), image.dtype))
    return levels[0]

  def _proposals(self, anchors, logits, deltas, image_size, train: bool):
    """Per image: top scores → boxes → NMS → `(boxes [P, 4], valid [P])`, no gradient."""
    pre = self.pre_nms_train if train else self.pre_nms_test
    post = self.post_nms_train if train else self.post_nms_test
    threshold = self.rpn_nms_train if train else self.rpn_nms_test
    pre = min(pre, anchors.shape[0])

    def one(logit, delta):
      scores, index = jax.lax.top_k(logit, pre)
      boxes = clip_boxes(decode(delta[index], anchors[index]), *image_size)
      valid = (boxes[:, 2] - boxes[:, 0] >= 1.0) & (boxes[:, 3] - boxes[:, 1] >= 1.0)
      keep, kept = nms(boxes, scores, valid, threshold, post)
      return boxes[keep], kept

    logits, deltas = jax.lax.stop_gradient((logits, deltas))
    return jax.vmap(one)(logits, deltas)

  def _pool(self, levels, boxes, size: int):
    """RoIAlign of `boxes [B, R, 4]` on P2–P5 → `[B, R, size, size, C]`."""
    return jax.vmap(lambda *a: pyramid_roi_align(a[:-1], HEAD_STRIDES, a[-1], size))(
      *levels[:4], boxes
    )

  def __call__(self, image: jax.Array, *, train: bool, instances: jax.Array | None = None):
    batch, height, width = image.shape[:3]
    if height % 32 or width % 32:
      raise ValueError(f"image sides must be multiples of 32 (FPN), got {height} × {width}.")
    anchors = jnp.asarray(
      pyramid_anchors((height, width), RPN_STRIDES, self.anchor_sizes, self.anchor_ratios)
    )
    levels = self.fpn(self.backbone(image))
    rpn_logits, rpn_deltas = self.rpn(levels)
    if not train or instances is None:
      if train:
        raise ValueError("training mode needs `instances` (the [B, H, W] instance label map).")
      return self._detect(levels, anchors, rpn_logits, rpn_deltas, (height, width))
    proposals, proposal_valid = self._proposals(
      anchors, rpn_logits, rpn_deltas, (height, width), True
    )
    boxes, box_valid = jax.vmap(lambda x: targets_lib.instance_boxes(x, self.max_instances))(
      instances
    )
    rpn_rng, roi_rng = jax.random.split(self.make_rng("sampling"))
    rpn = jax.vmap(
      lambda k, b, v: targets_lib.rpn_targets(k, anchors, b, v, self.rpn_anchors_per_image)
    )(jax.random.split(rpn_rng, batch), boxes, box_valid)
    rois = jax.vmap(
      lambda k, p, pv, b, v: targets_lib.roi_targets(
        k, p, pv, b, v, self.rois_per_image, self.roi_positive_fraction
      )
    )(jax.random.split(roi_rng, batch), proposals, proposal_valid, boxes, box_valid)
    rois = jax.lax.stop_gradient(rois)
    class_logits, box_deltas = self.box_head(self._pool(levels, rois["boxes"], 7))
    # Positives come first: the mask branch reads only as many RoIs as there can be positives.
    mask_rois = int(round(self.rois_per_image * self.roi_positive_fraction))
    mask_boxes = rois["boxes"][:, :mask_rois]
    pooled = self._pool(levels, mask_boxes, 14)
    mask_logits = self.mask_head(pooled.reshape(-1, *pooled.shape[2:]))
    mask_targets = jax.vmap(lambda x, b, m: targets_lib.mask_targets(x, b, m + 1, 28))(
      instances, mask_boxes, rois["match"][:, :mask_rois]
    )
    return {
      "rpn_logits": rpn_logits,
      "rpn_deltas": rpn_deltas,
      "rpn_labels": rpn["labels"],
      "rpn_weights": rpn["weights"],
      "rpn_target_deltas": rpn["deltas"],
      "rpn_positive": rpn["positive"],
      "roi_class_logits": class_logits,
      "roi_deltas": box_deltas,
      "roi_labels": rois["labels"],
      "roi_valid": rois["valid"],
      "roi_positive": rois["positive"],
      "roi_target_deltas": rois["deltas"],
      "mask_logits": mask_logits.reshape(batch, mask_rois, 28, 28),
      "mask_targets": jax.lax.stop_gradient(mask_targets),
      "mask_positive": rois["positive"][:, :mask_rois],
    }

  def _detect(self, levels, anchors, rpn_logits, rpn_deltas, image_size):
    """Inference: proposals → box head → refined, NMS'd detections → masks → instance map."""
    proposals, proposal_valid = self._proposals(anchors, rpn_logits, rpn_deltas, image_size, False)
    class_logits, box_deltas = self.box_head(self._pool(levels, proposals, 7))
    scores = jax.nn.softmax(class_logits, axis=-1)[..., 1]
    refined = clip_boxes(decode(box_deltas, proposals), *image_size)
    valid = (
      proposal_valid
      & (scores >= self.detection_min_score)
      & (refined[..., 2] - refined[..., 0] >= 1.0)
      & (refined[..., 3] - refined[..., 1] >= 1.0)
    )

    def one(boxes, score, keep):
      index, kept = nms(boxes, score, keep, self.detection_nms, self.detections)
      return boxes[index], score[index], kept

    boxes, scores, valid = jax.vmap(one)(refined, scores, valid)
    pooled = self._pool(levels, boxes, 14)
    mask_logits = self.mask_head(pooled.reshape(-1, *pooled.shape[2:]))
    mask_probs = jax.nn.sigmoid(mask_logits).reshape(*boxes.shape[:2], 28, 28)
    instances = jax.vmap(
      lambda b, m, s, v: paste_instances(
        b, m, s, v, image_size, self.mask_threshold, self.min_visible, self.min_object_area
      )
    )(boxes, mask_probs, scores, valid)
    return {
      "boxes": boxes,
      "scores": jnp.where(valid, scores, 0.0),
      "valid": valid,
      "mask_probs": mask_probs,
      "instances": instances,
    }
