"""Independent PyTorch kMaX mask transformer and U-Net, and their train-step benchmarks.

The PyTorch leg of the MaxQuery configs (`configs/maxquery.py`; DESIGN §3), written from the
layer descriptions of `mlsup_jax/nn/kmax.py` and `mlsup_jax/nn/unet.py` with the same
architecture and parameter count, channels-first (`[B, C, *S]`, 2-D or 3-D):

* U-Net level: 2 × (conv 3 no bias → InstanceNorm(affine, eps 1e-5) → LeakyReLU 0.01). The
  first conv of every encoder level but the first has stride 2 with XLA's SAME padding (`(0, 1)`,
  not PyTorch's symmetric `(1, 1)`); the decoder up-samples with a transposed conv 2 s2 (no
  bias; Flax's kernel is the spatially flipped PyTorch one), concatenates `[up, skip]`, and
  optionally drops out after each level. U-Net head: conv 1×1 with bias → logits `[B, K, *S]`.
* Pixel space: conv 1×1 no bias → BN → GELU.
* Predictor: [depth-wise conv k] → BN → GELU → 1×1 → BN → GELU → 1×1 (mask_dim) → BN → L2
  normalised; queries: linear (mask_dim) → BN; affinities `⟨pixel, query⟩` → single-channel BN
  (scale 0.1); class logits: linear with bias.
* kMaX layer: pixel space → predictor; hard-argmax k-means sum of a 1×1 value → BN → linear →
  BN (scale 0), residual; multi-head self-attention (no biases) → BN (scale 0), residual, GELU;
  FFN (linear → BN → GELU → linear → BN (scale 0)), residual, GELU.

BN: eps 1e-3, momentum 0.1 (Flax's 0.9); GELU: the tanh approximation (Flax's default).
Outputs: `mask_logits [B, N, *S]`, `class_logits [B, N, K]`, `aux` (one `{mask_logits,
class_logits}` per decoder layer, at that layer's scale).

The losses re-implement `losses/segmentation.py` and `losses/mask_transformer.py` (CE and soft
batch Dice on the MaskFormer semantic log-probabilities, the query-distribution loss, deep
supervision with strided label down-sampling) for batches without evaluation padding. The step
timed is the JAX method's: forward in train mode, the `config.loss` terms, backward, global-norm
gradient clipping (`optimizer.grad_clip_norm`) and `torch.optim.AdamW` with the config's
lr / betas / eps / weight decay (no schedule: it does not change the cost of a step). PyTorch is
optional (`pip install -e .[bench]`) and imported lazily; on CPU with `OMP_WAIT_POLICY=PASSIVE`
by default (`_import_torch`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import sys
import time
import types
from collections.abc import Sequence


@functools.cache
def _torch_modules() -> types.SimpleNamespace:
  """The `torch.nn.Module` classes (built on first use so that importing needs no PyTorch)."""
  import torch
  from torch import nn
  from torch.nn import functional as F

  conv_cls = {2: nn.Conv2d, 3: nn.Conv3d}
  transpose_cls = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
  instance_norm_cls = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
  batch_norm_cls = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}

  def check_dims(dims):
    if dims not in conv_cls:
      raise ValueError(f"spatial_dims must be 2 or 3, got {dims}.")

  def gelu(x):
    return F.gelu(x, approximate="tanh")

  def batch_norm(cls, channels, scale=1.0):
    bn = cls(channels, eps=1e-3, momentum=0.1)
    nn.init.constant_(bn.weight, scale)
    return bn

  class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last axis of `[..., C]` (statistics over every other axis)."""

    def forward(self, x):
      return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)

  def token_batch_norm(channels, scale=1.0):
    return batch_norm(TokenBatchNorm, channels, scale)

  class ScalarBatchNorm(nn.BatchNorm1d):
    """Single-channel BatchNorm of every element (as `[1, 1, M]`: PyTorch's fast layout)."""

    def forward(self, x):
      return super().forward(x.reshape(1, 1, -1)).reshape(x.shape)

  class ConvNormAct(nn.Module):
    """`conv 3 (no bias) → InstanceNorm → LeakyReLU(0.01)`; stride 2 pads like XLA's SAME."""

    def __init__(self, cin, cout, dims, stride=1):
      super().__init__()
      self.pad = (0, 1) * dims if stride == 2 else None
      padding = 0 if stride == 2 else 1
      self.conv = conv_cls[dims](cin, cout, 3, stride, padding, bias=False)
      self.norm = instance_norm_cls[dims](cout, eps=1e-5, affine=True)

    def forward(self, x):
      if self.pad is not None:
        x = F.pad(x, self.pad)
      return F.leaky_relu(self.norm(self.conv(x)), 0.01)

  class UNetBackbone(nn.Module):
    """`[B, C, *S]` → the decoder features, coarsest (bottleneck) first, finest last."""

    def __init__(self, in_channels, features, dims=2, dropout_rate=0.0):
      super().__init__()
      check_dims(dims)
      self.dims, self.features = dims, tuple(features)
      self.encoder = nn.ModuleList()
      cin = in_channels
      for level, width in enumerate(self.features):
        stride = 1 if level == 0 else 2
        self.encoder.append(
          nn.Sequential(ConvNormAct(cin, width, dims, stride), ConvNormAct(width, width, dims))
        )
        cin = width
      self.up = nn.ModuleList()
      self.decoder = nn.ModuleList()
      for coarse, width in zip(self.features[:0:-1], self.features[-2::-1], strict=True):
        self.up.append(transpose_cls[dims](coarse, width, 2, 2, bias=False))
        self.decoder.append(
          nn.Sequential(ConvNormAct(2 * width, width, dims), ConvNormAct(width, width, dims))
        )
      self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()

    def forward(self, x):
      factor = 2 ** (len(self.features) - 1)
      if x.ndim != self.dims + 2 or any(n % factor for n in x.shape[2:]):
        raise ValueError(
          f"UNet expects [B, C, *S] of rank {self.dims + 2} with sides multiple of {factor}; "
          f"got {tuple(x.shape)}."
        )
      skips = []
      for level in self.encoder:
        x = level(x)
        skips.append(x)
      outputs = [x]
      for up, level, skip in zip(self.up, self.decoder, skips[-2::-1], strict=True):
        x = self.dropout(level(torch.cat([up(x), skip], dim=1)))
        outputs.append(x)
      return outputs

  class UNet(nn.Module):
    """`[B, C, *S]` → per-pixel logits `[B, K, *S]`."""

    def __init__(self, in_channels, num_classes, features, dims=2, dropout_rate=0.0):
      super().__init__()
      self.backbone = UNetBackbone(in_channels, features, dims, dropout_rate)
      self.head = conv_cls[dims](features[0], num_classes, 1)

    def forward(self, x):
      return self.head(self.backbone(x)[-1])

  class PixelSpace(nn.Sequential):
    """`conv 1×1 (no bias) → BN → GELU`: `[B, C, *S]` → `[B, D, *S]`."""

    def __init__(self, cin, width, dims):
      super().__init__(
        conv_cls[dims](cin, width, 1, bias=False),
        batch_norm(batch_norm_cls[dims], width),
        nn.GELU(approximate="tanh"),
      )

  class Predictor(nn.Module):
    """Pixel–query affinities `[B, N, *S]` and class logits `[B, N, K]` (module docstring)."""

    def __init__(self, width, hidden, mask_dim, num_classes, dims, kernel):
      super().__init__()
      conv, bn = conv_cls[dims], batch_norm_cls[dims]
      self.depthwise = (
        conv(width, width, kernel, padding=kernel // 2, groups=width, bias=False)
        if kernel > 1
        else None
      )
      self.norm0 = batch_norm(bn, width)
      self.conv1 = conv(width, width, 1, bias=False)
      self.norm1 = batch_norm(bn, width)
      self.conv2 = conv(width, mask_dim, 1, bias=False)
      self.norm2 = batch_norm(bn, mask_dim)
      self.query_proj = nn.Linear(hidden, mask_dim, bias=False)
      self.query_norm = token_batch_norm(mask_dim)
      self.affinity_norm = batch_norm(ScalarBatchNorm, 1, scale=0.1)
      self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, pixel, queries):
      p = pixel if self.depthwise is None else self.depthwise(pixel)
      p = gelu(self.norm0(p))
      p = gelu(self.norm1(self.conv1(p)))
      p = self.norm2(self.conv2(p)).float()
      p = p * torch.rsqrt(torch.sum(p * p, dim=1, keepdim=True) + 1e-12)
      q = self.query_norm(self.query_proj(queries)).float()
      logits = torch.bmm(q, p.flatten(2))  # [B, N, P]
      logits = self.affinity_norm(logits)
      logits = logits.reshape(*logits.shape[:2], *pixel.shape[2:])
      return logits, self.classifier(queries).float()

  class KMaXLayer(nn.Module):
    """k-means cross-attention + query self-attention + FFN on queries `[B, N, D]`."""

    def __init__(self, cin, hidden, mask_dim, num_classes, dims, num_heads, ffn_dim, kernel):
      super().__init__()
      if hidden % num_heads:
        raise ValueError(f"hidden_dim {hidden} is not a multiple of num_heads {num_heads}.")
      self.num_heads = num_heads
      self.pixel_space = PixelSpace(cin, hidden, dims)
      self.predictor = Predictor(hidden, hidden, mask_dim, num_classes, dims, kernel)
      self.value = conv_cls[dims](hidden, hidden, 1, bias=False)
      self.delta_norm = token_batch_norm(hidden)
      self.update = nn.Linear(hidden, hidden, bias=False)
      self.update_norm = token_batch_norm(hidden, scale=0.0)
      self.query = nn.Linear(hidden, hidden, bias=False)
      self.key = nn.Linear(hidden, hidden, bias=False)
      self.value_proj = nn.Linear(hidden, hidden, bias=False)
      self.out = nn.Linear(hidden, hidden, bias=False)
      self.attention_norm = token_batch_norm(hidden, scale=0.0)
      self.ffn1 = nn.Linear(hidden, ffn_dim, bias=False)
      self.ffn_norm = token_batch_norm(ffn_dim)
      self.ffn2 = nn.Linear(ffn_dim, hidden, bias=False)
      self.ffn_out_norm = token_batch_norm(hidden, scale=0.0)

    def attention(self, x):
      b, n, d = x.shape
      h = self.num_heads

      def heads(proj):
        return proj(x).reshape(b, n, h, d // h).transpose(1, 2)

      # Scaled by 1/sqrt(head_dim), as Flax's dot_product_attention.
      y = F.scaled_dot_product_attention(heads(self.query), heads(self.key), heads(self.value_proj))
      return self.out(y.transpose(1, 2).reshape(b, n, d))

    def forward(self, queries, features):
      pixel = self.pixel_space(features)
      mask_logits, class_logits = self.predictor(pixel, queries)
      # k-means update: one-hot argmax assignment (no gradient) → sum of the assigned values.
      with torch.no_grad():
        nearest = mask_logits.flatten(2).argmax(dim=1)  # [B, P]
        assignment = F.one_hot(nearest, mask_logits.shape[1]).to(pixel.dtype)  # [B, P, N]
      delta = torch.bmm(self.value(pixel).flatten(2), assignment).transpose(1, 2)  # [B, N, D]
      delta = self.update(self.delta_norm(delta))
      queries = queries + self.update_norm(delta)
      queries = gelu(queries + self.attention_norm(self.attention(queries)))
      h = self.ffn2(gelu(self.ffn_norm(self.ffn1(queries))))
      queries = gelu(queries + self.ffn_out_norm(h))
      return queries, (mask_logits, class_logits)

  class KMaX(nn.Module):
    """U-Net backbone + kMaX decoder: `[B, C, *S]` → `{mask_logits, class_logits, aux}`."""

    def __init__(
      self,
      in_channels,
      num_classes,
      num_queries=32,
      backbone_features=(16, 32, 64, 128),
      hidden_dim=64,
      mask_dim=32,
      num_heads=4,
      ffn_dim=256,
      blocks_per_scale=(1, 1, 1),
      pixel_head_kernel=5,
      spatial_dims=2,
      dropout_rate=0.0,
    ):
      super().__init__()
      features = tuple(backbone_features)
      if len(blocks_per_scale) >= len(features):
        raise ValueError(
          f"blocks_per_scale {tuple(blocks_per_scale)} needs fewer scales than the "
          f"{len(features)} backbone levels."
        )
      dims = spatial_dims
      self.backbone = UNetBackbone(in_channels, features, dims, dropout_rate)
      self.cluster_centres = nn.Parameter(torch.empty(num_queries, hidden_dim))
      nn.init.trunc_normal_(self.cluster_centres, std=1.0, a=-2.0, b=2.0)
      widths = features[::-1]  # The backbone's outputs, coarsest first.
      self.scales = [s for s, n in enumerate(blocks_per_scale) for _ in range(n)]
      self.layers = nn.ModuleList(
        KMaXLayer(
          widths[s],
          hidden_dim,
          mask_dim,
          num_classes,
          dims,
          num_heads,
          ffn_dim,
          pixel_head_kernel,
        )
        for s in self.scales
      )
      self.pixel_space = PixelSpace(features[0], mask_dim, dims)
      self.predictor = Predictor(
        mask_dim, hidden_dim, mask_dim, num_classes, dims, pixel_head_kernel
      )

    def forward(self, x):
      features = self.backbone(x)
      queries = self.cluster_centres.expand(x.shape[0], *self.cluster_centres.shape)
      aux = []
      for scale, layer in zip(self.scales, self.layers, strict=True):
        queries, (mask_logits, class_logits) = layer(queries, features[scale])
        aux.append({"mask_logits": mask_logits, "class_logits": class_logits})
      pixel = self.pixel_space(features[-1])
      mask_logits, class_logits = self.predictor(pixel, queries)
      return {"mask_logits": mask_logits, "class_logits": class_logits, "aux": tuple(aux)}

  return types.SimpleNamespace(UNetBackbone=UNetBackbone, UNet=UNet, KMaX=KMaX)


def build_kmax(config, in_channels: int = 1):
  """The PyTorch `KMaX` of `config.model` / `config.data.spatial_dims` (a MaxQuery config)."""
  m = config.model
  return _torch_modules().KMaX(
    in_channels,
    m.num_classes,
    num_queries=m.num_queries,
    backbone_features=tuple(m.backbone_features),
    hidden_dim=m.hidden_dim,
    mask_dim=m.mask_dim,
    num_heads=m.num_heads,
    ffn_dim=m.ffn_dim,
    blocks_per_scale=tuple(m.blocks_per_scale),
    pixel_head_kernel=m.pixel_head_kernel,
    spatial_dims=config.data.spatial_dims,
    dropout_rate=m.dropout_rate,
  )


def build_unet(config, in_channels: int = 1):
  """The PyTorch `UNet` of `config.model` (the `variant=unet` baseline)."""
  m = config.model
  return _torch_modules().UNet(
    in_channels,
    m.num_classes,
    tuple(m.backbone_features),
    config.data.spatial_dims,
    m.dropout_rate,
  )


def count_parameters(model) -> int:
  return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------
# Losses (channels-first; every example valid).


def semantic_log_probs(mask_logits, class_logits):
  """MaskFormer semantic inference as log-probabilities, floored at 1e-30.

  Args:
    mask_logits: `[B, N, *S]`.
    class_logits: `[B, N, K]`.

  Returns:
    `[B, K, *S]` float32 `log Σ_n softmax_n(A) · softmax_k(class_logits)`.
  """
  assign = mask_logits.float().softmax(dim=1).flatten(2)  # [B, N, P]
  classes = class_logits.float().softmax(dim=-1).transpose(1, 2)  # [B, K, N]
  seg = (classes @ assign).reshape(*classes.shape[:2], *mask_logits.shape[2:])
  return seg.clamp_min(1e-30).log()


def cross_entropy(outputs: dict, labels, label_smoothing: float = 0.0):
  """Mean pixel CE of `logits [B, K, *S]` (sigmoid BCE of `labels == 1` when K = 1)."""
  from torch.nn import functional as F

  logits = outputs["logits"].float()
  if logits.shape[1] == 1:
    return F.binary_cross_entropy_with_logits(logits[:, 0], (labels == 1).float())
  return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def soft_dice(
  outputs: dict,
  labels,
  smooth: float = 1.0,
  per_sample: bool = False,
  include_background: bool = True,
):
  """`1 − soft Dice` of `logits [B, K, *S]` (the library's convention, batch Dice by default)."""
  from torch.nn import functional as F

  logits = outputs["logits"].float()
  if logits.shape[1] == 1:
    probs, target = logits.sigmoid(), (labels == 1).float()[:, None]
  else:
    probs = logits.softmax(dim=1)
    target = F.one_hot(labels, logits.shape[1]).movedim(-1, 1).float()
    if not include_background:
      probs, target = probs[:, 1:], target[:, 1:]
  spatial = tuple(range(2, probs.ndim))
  intersection = (probs * target).sum(dim=spatial)  # [B, K]
  denominator = (probs + target).sum(dim=spatial)  # [B, K]
  if per_sample:
    dice = ((2 * intersection + smooth) / (denominator + smooth)).mean(dim=1).mean()
  else:
    dice = ((2 * intersection.sum(0) + smooth) / (denominator.sum(0) + smooth)).mean()
  return 1.0 - dice


def query_distribution(
  outputs: dict,
  labels,
  query_split: Sequence[int] = (16, 4, 12),
  class_groups: Sequence[int] = (0, 1, 2, 2, 2),
  reduction: str = "pixel",
):
  """The QD loss: `−log Σ_{n ∈ group(label)} softmax_n(A)`, averaged over pixels.

  Args:
    outputs: `mask_logits [B, N, *S]`.
    labels: `[B, *S]` int64.
    query_split: consecutive query-group sizes, summing to N.
    class_groups: the group of each class.
    reduction: "pixel" (mean over pixels) or "group_balanced" (mean per target group, then over
      the groups present).
  """
  import torch
  from torch.nn import functional as F

  mask_logits = outputs["mask_logits"].float()
  if sum(query_split) != mask_logits.shape[1]:
    raise ValueError(f"query_split {tuple(query_split)} must sum to {mask_logits.shape[1]}.")
  device = mask_logits.device
  groups = torch.repeat_interleave(
    torch.arange(len(query_split), device=device), torch.tensor(list(query_split), device=device)
  )
  membership = F.one_hot(groups, len(query_split)).float()  # [N, G]
  assign = mask_logits.softmax(dim=1).flatten(2)  # [B, N, P]
  group_probs = (membership.T @ assign).reshape(
    mask_logits.shape[0], len(query_split), *mask_logits.shape[2:]
  )
  target = torch.tensor(list(class_groups), device=device)[labels]
  per_pixel = F.nll_loss(group_probs.clamp_min(1e-30).log(), target, reduction="none")
  if reduction == "pixel":
    return per_pixel.mean()
  if reduction != "group_balanced":
    raise ValueError(f"Unknown QD reduction {reduction!r}.")
  means = [per_pixel[target == g].mean() for g in range(len(query_split)) if (target == g).any()]
  return torch.stack(means).mean()


LOSSES = {
  "cross_entropy": cross_entropy,
  "soft_dice": soft_dice,
  "query_distribution": query_distribution,
}


def weighted_sum(loss_config, outputs: dict, labels):
  """`Σ weight · term(outputs, labels, **config[term])` over `loss_config.terms`."""
  total = 0.0
  for name, weight in zip(loss_config.terms, loss_config.weights, strict=True):
    hparams = dict(loss_config[name]) if name in loss_config else {}
    total = total + weight * LOSSES[name](outputs, labels, **hparams)
  return total


def downsample_labels(labels, spatial: Sequence[int]):
  """`labels [B, *S]` → `[B, *spatial]`: the label at the centre of each `S / spatial` block."""
  full = tuple(labels.shape[1:])
  if full == tuple(spatial):
    return labels
  if any(f % s for f, s in zip(full, spatial, strict=True)):
    raise ValueError(f"Label shape {full} is not a multiple of the prediction shape {spatial}.")
  return labels[
    (slice(None), *(slice((f // s) // 2, None, f // s) for f, s in zip(full, spatial, strict=True)))
  ]


def deep_supervision(loss_config, outputs: dict, labels):
  """The MaxQuery loss: final layer + `loss_config.aux_weight` × every decoder layer's loss.

  Args:
    loss_config: `config.loss` of a MaxQuery config.
    outputs: the `KMaX` output (`mask_logits [B, N, *S]`, `class_logits [B, N, K]`, `aux`).
    labels: `[B, *S]` int64.

  Returns:
    The scalar loss.
  """

  def layer_loss(prediction, layer_labels):
    logits = semantic_log_probs(prediction["mask_logits"], prediction["class_logits"])
    return weighted_sum(loss_config, {**prediction, "logits": logits}, layer_labels)

  total = layer_loss(outputs, labels)
  aux = 0.0
  for prediction in outputs["aux"]:
    aux = aux + layer_loss(
      prediction, downsample_labels(labels, prediction["mask_logits"].shape[2:])
    )
  return total + loss_config.aux_weight * aux


# ---------------------------------------------------------------------------------------------
# Benchmarks.


def _image_shape(config, image_shape: Sequence[int] | None) -> tuple[int, ...]:
  """`[*S, C]` (channels-last, as the JAX batch): given, or the config's phantom size."""
  if image_shape is not None:
    return tuple(int(n) for n in image_shape)
  source = config.data.train_source
  size = source.image_size
  spatial = (size, size) if config.data.spatial_dims == 2 else (source.depth, size, size)
  return (*spatial, 1)


def _import_torch(device: str):
  """`import torch`; on CPU, with `OMP_WAIT_POLICY=PASSIVE` unless it is set or torch is loaded.

  The variable is read once, when PyTorch loads its OpenMP runtime. Actively spinning OpenMP
  threads share the cores with XLA's thread pool of the jit leg run in the same process (and
  with any other load): on a 2-core host that made the kMaX step ~20× slower (9.7 s vs 0.48 s).
  """
  if device == "cpu" and "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
  import torch

  return torch


def _benchmark(config, build, loss_fn, batch, warmup, iters, device, image_shape) -> dict:
  """Times `build(config, C)`'s train step: forward, `loss_fn(outputs, labels)`, AdamW."""
  try:
    torch = _import_torch(device)
  except ImportError:
    return {"leg": "torch", "skipped": "torch not installed"}
  if iters < 1:
    raise ValueError(f"iters={iters} must be ≥ 1.")
  torch.manual_seed(0)
  dev = torch.device(device)
  *spatial, channels = _image_shape(config, image_shape)
  model = build(config, channels).to(dev).train()
  opt = config.optimizer
  optimizer = torch.optim.AdamW(
    model.parameters(),
    lr=opt.learning_rate,
    betas=(opt.b1, opt.b2),
    eps=opt.eps,
    weight_decay=opt.weight_decay,
  )
  images = torch.randn(batch, channels, *spatial, device=dev)
  labels = torch.randint(0, config.model.num_classes, (batch, *spatial), device=dev)
  dtype = str(config.model.get("dtype", "float32"))

  def autocast():  # The JAX model's bfloat16 compute with float32 parameters.
    if dtype == "bfloat16":
      return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

  cuda = dev.type == "cuda"
  if cuda:
    torch.cuda.reset_peak_memory_stats(dev)
  times = []
  for i in range(warmup + iters):
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    with autocast():
      outputs = model(images)
    loss = loss_fn(outputs, labels)
    loss.backward()
    if opt.grad_clip_norm:
      torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip_norm)
    optimizer.step()
    if cuda:
      torch.cuda.synchronize(dev)
    if i >= warmup:
      times.append(time.perf_counter() - start)
  median = statistics.median(times)
  layout = "NCHW" if len(spatial) == 2 else "NCDHW"
  return {
    "leg": "torch",
    "device_kind": torch.cuda.get_device_name(dev) if cuda else "cpu",
    "platform": dev.type,
    "device_count": 1,
    "dtype": dtype,
    "batch_size": batch,
    "compile_s": None,
    "warmup": warmup,
    "iters": iters,
    "step_ms_min": 1e3 * min(times),
    "step_ms_median": 1e3 * median,
    "examples_per_s": batch / median,
    "flops_per_step": None,
    "tflops_per_s": None,
    "mfu": None,
    "memory": {"peak_bytes": int(torch.cuda.max_memory_allocated(dev)) if cuda else None},
    "note": (
      f"eager PyTorch {torch.__version__}, {layout}, {torch.get_num_threads()} CPU threads, "
      f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}"
    ),
    "parameters": count_parameters(model),
  }


def benchmark_torch_kmax(
  config,
  batch: int,
  warmup: int = 3,
  iters: int = 10,
  device: str = "cpu",
  image_shape: Sequence[int] | None = None,
) -> dict:
  """Times MaxQuery's train step in eager PyTorch: kMaX forward, deep-supervised loss, AdamW.

  Args:
    config: a MaxQuery config (`configs/maxquery.py`, `model.name == "kmax"`).
    batch: examples per step.
    warmup: untimed steps.
    iters: timed steps (at least 1).
    device: torch device string ("cpu", "cuda").
    image_shape: `[*S, C]` of one image (the JAX batch's, channels last); default: the config's
      phantom size with one channel.

  Returns:
    The report of `torch_scunet.benchmark_torch_scunet` (same keys), or `{"skipped": ...}`
    without PyTorch.
  """
  return _benchmark(
    config,
    build_kmax,
    lambda outputs, labels: deep_supervision(config.loss, outputs, labels),
    batch,
    warmup,
    iters,
    device,
    image_shape,
  )


def benchmark_torch_unet(
  config,
  batch: int,
  warmup: int = 3,
  iters: int = 10,
  device: str = "cpu",
  image_shape: Sequence[int] | None = None,
) -> dict:
  """Times the U-Net baseline's train step (forward with dropout, `config.loss`, AdamW).

  Arguments and report as `benchmark_torch_kmax`, for a `variant=unet` config.
  """
  return _benchmark(
    config,
    build_unet,
    lambda logits, labels: weighted_sum(config.loss, {"logits": logits}, labels),
    batch,
    warmup,
    iters,
    device,
    image_shape,
  )
