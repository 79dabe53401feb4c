"""An independent PyTorch U-Net + MORSE head and its train-step benchmark (the PyTorch leg).

Written from the description in `mlsup_jax/nn/morse.py`'s docstring (the authors' `MOEHead_random`
+ `ImplicitPointHead` + PointRend's point selection), on the PyTorch U-Net of
`torch_kmax_models` (the same backbone as the JAX `unet`), NCHW / NCDHW:

* experts: per decoder scale, 1×1 conv → ReLU → 1×1 conv → ReLU (`expert_dim`), resized to the
  finest scale (`interpolate`, linear, `align_corners=False`); gate: two 3×3 conv + BN + ReLU
  layers, softmax over scales; `r ~ U{0, …, max_dropped}` random experts zeroed; two 1×1
  conv + ReLU, `Dropout2d(0.1)`, 1×1 conv to `feature_dim`;
* points: `oversample · N` uniform candidates scored by the top-2 logit gap of
  `grid_sample(align_corners=False)`, the `importance · N` most uncertain kept plus uniform ones;
* point head: `[sin, cos]` Fourier features of the coordinates, the fine features and the
  coarse logits at the points, `num_fc` × (Linear → ReLU, coarse logits concatenated), a linear
  predictor;
* loss: `config.loss` on the coarse logits + 0.5 · point cross-entropy (the labels read by
  nearest sampling); AdamW with the config's hyper-parameters.

PyTorch is optional (`pip install -e .[bench]`) and imported lazily.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from benchmarks.torch_kmax import _benchmark
from benchmarks.torch_kmax_losses import weighted_sum
from benchmarks.torch_kmax_models import _torch_modules


def _grid(coords):
  """`[B, N, d]` coordinates in [0, 1], layout axis order → `grid_sample`'s `[B, N, 1…, d]`
  grid in [−1, 1] with the axes reversed."""
  dims = coords.shape[-1]
  g = 2 * coords.flip(-1) - 1
  return g.reshape(g.shape[0], g.shape[1], *([1] * (dims - 1)), dims)


def build_morse(config, in_channels: int = 1):
  """The PyTorch U-Net + MORSE of a `configs/morse.py` config (U-Net backbone only)."""
  import torch
  from torch import nn
  from torch.nn import functional as F

  m, dims = config.model, config.data.spatial_dims
  backbone = m.backbone
  if backbone.name != "unet":
    raise ValueError(f"The PyTorch MORSE leg has a U-Net backbone only, got {backbone.name!r}.")
  conv = {2: nn.Conv2d, 3: nn.Conv3d}[dims]
  norm = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
  dropout = {2: nn.Dropout2d, 3: nn.Dropout3d}[dims]
  features = tuple(backbone.features)
  widths = features[::-1]  # the backbone's outputs, coarsest first
  mode = "bilinear" if dims == 2 else "trilinear"

  def sample(x, coords, how="bilinear"):  # [B, C, *S] → [B, N, C]
    out = F.grid_sample(x, _grid(coords), mode=how, align_corners=False)
    return out.reshape(x.shape[0], x.shape[1], -1).transpose(1, 2)

  class Morse(nn.Module):
    def __init__(self):
      super().__init__()
      self.backbone = _torch_modules().UNetBackbone(in_channels, features, dims, 0.0)
      self.classifier = conv(features[0], m.num_classes, 1)
      e = m.expert_dim
      self.experts = nn.ModuleList(
        nn.Sequential(conv(w, e, 1), nn.ReLU(), conv(e, e, 1), nn.ReLU()) for w in widths
      )
      self.gate = nn.Sequential(
        conv(e * len(widths), m.feature_dim, 3, padding=1, bias=False),
        norm(m.feature_dim),
        nn.ReLU(),
        conv(m.feature_dim, len(widths), 3, padding=1, bias=False),
        norm(len(widths)),
        nn.ReLU(),
      )
      self.after = nn.Sequential(conv(e, e, 1), nn.ReLU(), conv(e, e, 1), nn.ReLU(), dropout(0.1))
      self.project = conv(e, m.feature_dim, 1)
      self.register_buffer("encoding", torch.rand(dims, 128))
      width_in = 256 + m.feature_dim + m.num_classes
      self.fc = nn.ModuleList()
      for _ in range(m.num_fc):
        self.fc.append(nn.Linear(width_in, m.fc_dim))
        width_in = m.fc_dim + m.num_classes
      self.predictor = nn.Linear(width_in, m.num_classes)

    def forward(self, x):
      scales = self.backbone(x)
      logits = self.classifier(scales[-1])
      finest = scales[-1].shape[2:]
      experts = [
        F.interpolate(f(s), size=finest, mode=mode, align_corners=False)
        if s.shape[2:] != finest
        else f(s)
        for f, s in zip(self.experts, scales, strict=True)
      ]
      weights = torch.softmax(self.gate(torch.cat(experts, 1)), dim=1)
      count = int(torch.randint(0, min(m.max_dropped_experts, len(widths)) + 1, ()))
      keep = torch.ones(len(widths), device=x.device)
      keep[torch.randperm(len(widths), device=x.device)[:count]] = 0
      weights = weights * keep.view(1, -1, *([1] * dims))
      fused = sum(w.unsqueeze(1) * f for w, f in zip(weights.unbind(1), experts, strict=True))
      fine = self.project(self.after(fused))
      # Training points by uncertainty with oversampling.
      batch, n = x.shape[0], m.train_points
      with torch.no_grad():
        candidates = torch.rand(batch, int(n * m.oversample), dims, device=x.device)
        top2 = torch.topk(sample(logits, candidates), 2, dim=-1)[0]
        keep_n = int(round(m.importance * n))
        chosen = torch.topk(top2[..., 1] - top2[..., 0], keep_n, dim=1)[1]
        coords = torch.cat(
          [
            torch.gather(candidates, 1, chosen.unsqueeze(-1).expand(-1, -1, dims)),
            torch.rand(batch, n - keep_n, dims, device=x.device),
          ],
          dim=1,
        )
      coarse = sample(logits, coords)
      projected = 2 * math.pi * ((2 * coords - 1) @ self.encoding)
      h = torch.cat([projected.sin(), projected.cos(), sample(fine, coords), coarse], -1)
      for layer in self.fc:
        h = torch.cat([F.relu(layer(h)), coarse], -1)
      return logits, self.predictor(h), coords

  return Morse()


def _loss(config):
  import torch.nn.functional as F

  def loss(outputs, labels):
    logits, point_logits, coords = outputs
    point_labels = (
      F.grid_sample(labels.unsqueeze(1).float(), _grid(coords), mode="nearest", align_corners=False)
      .reshape(coords.shape[0], -1)
      .long()
    )
    point = F.cross_entropy(point_logits.transpose(1, 2), point_labels)
    return weighted_sum(config.loss, {"logits": logits}, labels) + 0.5 * point

  return loss


def benchmark_torch_morse(
  config,
  batch: int,
  warmup: int = 3,
  iters: int = 10,
  device: str = "cpu",
  image_shape: Sequence[int] | None = None,
) -> dict:
  """Times the U-Net + MORSE train step; the report of `torch_kmax.benchmark_torch_kmax`."""
  if config.model.backbone.name != "unet":
    return {"leg": "torch", "skipped": "the PyTorch MORSE leg has a U-Net backbone only"}
  return _benchmark(config, build_morse, _loss(config), batch, warmup, iters, device, image_shape)
