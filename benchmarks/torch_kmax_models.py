"""The independent PyTorch kMaX mask transformer and U-Net of the MaxQuery torch leg.

Written from the layer descriptions of `mlsup_jax/nn/kmax.py` and `mlsup_jax/nn/unet.py` with
the same architecture and parameter count, channels-first (`[B, C, *S]`, 2-D or 3-D):

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

The `torch.nn.Module` classes are built on first use (`_torch_modules`), so importing this module
needs no PyTorch; `build_kmax` / `build_unet` make them from a MaxQuery config.
"""

from __future__ import annotations

import functools
import types


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
    tuple(m.features),
    config.data.spatial_dims,
    m.dropout_rate,
  )


def count_parameters(model) -> int:
  """The number of trainable parameters of a `torch.nn.Module`."""
  return sum(p.numel() for p in model.parameters() if p.requires_grad)
