"""An independent PyTorch SCU-Net and its train-step benchmark (the PyTorch leg of DESIGN §3).

Written from the layer table of `mlsup_jax/nn/scunet.py`, not translated from its code:

| stage | operation | output |
|---|---|---|
| stem | CBP 3×3 s2 3→16, CBP 16→16, CBP 16→16 → f0 | H/2 × 16 |
| inject-1 | concat(f0, avgpool(x)) → BN → PReLU → Dropout(0.5) | H/2 × 19 |
| Dconv1 | context-guided down block (19→32, dilation 2, SE reduction 8) → f1 | H/4 × 32 |
| inject-2 | concat(f1, avgpool²(x)) → BN → PReLU → Dropout(0.5) | H/4 × 35 |
| Dconv2 | context-guided down block (35→64, dilation 4, SE reduction 16) → f2 | H/8 × 64 |
| Up-1 | bilinear ×2, concat f1, double conv 96→64→64 | H/4 × 64 |
| Up-2 | bilinear ×2, concat f0, double conv 80→32→32 | H/2 × 32 |
| Up-3 | bilinear ×2 | H × 32 |
| head | Conv 1×1 32→num_classes | H × num_classes (logits) |

NCHW. CBP = Conv (no bias) → BatchNorm(eps 1e-3) → per-channel PReLU(0.25). Double convs:
Conv 3×3 with bias → BatchNorm(eps 1e-5) → one shared PReLU slope, twice. Bilinear upsampling
with `align_corners=False` (the half-pixel centres of the JAX model). 169,711 parameters for 3
input channels and 1 class, as the JAX model.

The step timed is the JAX method's: forward in train mode, soft Dice (batch Dice of sigmoid
probabilities, smooth 1) backward, AdamW(lr 1e-3, weight decay 0.01) step. PyTorch is optional
(`pip install -e .[bench]`) and imported lazily.
"""

from __future__ import annotations

from benchmarks.torch_report import timed_steps, torch_report


def build_scunet(in_channels: int = 3, num_classes: int = 1, dropout_rate: float = 0.5):
  """The SCU-Net as a `torch.nn.Module` mapping `[B, C, H, W]` to logits `[B, K, H, W]`."""
  import torch
  from torch import nn
  from torch.nn import functional as F

  def cbp(cin, cout, stride=1):
    return nn.Sequential(
      nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
      nn.BatchNorm2d(cout, eps=1e-3),
      nn.PReLU(cout, init=0.25),
    )

  def bn_prelu(channels):
    return nn.Sequential(nn.BatchNorm2d(channels, eps=1e-3), nn.PReLU(channels, init=0.25))

  def double_conv(cin, cout):
    layers = []
    for c in (cin, cout):
      layers += [nn.Conv2d(c, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.PReLU(1, init=0.25)]
    return nn.Sequential(*layers)

  def up(x):
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

  class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduction):
      super().__init__()
      self.fc1 = nn.Linear(channels, channels // reduction)
      self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x):
      y = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))
      return x * y[:, :, None, None]

  class ContextGuidedDown(nn.Module):
    def __init__(self, cin, cout, dilation, reduction):
      super().__init__()
      self.reduce = cbp(cin, cout, stride=2)
      self.local = nn.Conv2d(cout, cout, 3, 1, 1, groups=cout, bias=False)
      self.surround = nn.Conv2d(
        cout, cout, 3, 1, dilation, dilation=dilation, groups=cout, bias=False
      )
      self.joint = bn_prelu(2 * cout)
      self.fuse = nn.Conv2d(2 * cout, cout, 1, bias=False)
      self.glo = SqueezeExcite(cout, reduction)

    def forward(self, x):
      x = self.reduce(x)
      x = self.joint(torch.cat([self.local(x), self.surround(x)], dim=1))
      return self.glo(self.fuse(x))

  class ScuNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.stem = nn.Sequential(cbp(in_channels, 16, stride=2), cbp(16, 16), cbp(16, 16))
      self.pool = nn.AvgPool2d(3, 2, padding=1, count_include_pad=True)
      self.inject1 = bn_prelu(16 + in_channels)
      self.inject2 = bn_prelu(32 + in_channels)
      self.dropout = nn.Dropout(dropout_rate)
      self.down1 = ContextGuidedDown(16 + in_channels, 32, dilation=2, reduction=8)
      self.down2 = ContextGuidedDown(32 + in_channels, 64, dilation=4, reduction=16)
      self.up1 = double_conv(32 + 64, 64)
      self.up2 = double_conv(16 + 64, 32)
      self.head = nn.Conv2d(32, num_classes, 1)

    def forward(self, x):
      if x.ndim != 4 or x.shape[2] % 8 or x.shape[3] % 8:
        raise ValueError(f"ScuNet expects [B, C, H, W] with H, W multiples of 8; got {x.shape}.")
      f0 = self.stem(x)
      pooled1 = self.pool(x)
      pooled2 = self.pool(pooled1)
      f1 = self.down1(self.dropout(self.inject1(torch.cat([f0, pooled1], dim=1))))
      f2 = self.down2(self.dropout(self.inject2(torch.cat([f1, pooled2], dim=1))))
      h = self.up1(torch.cat([f1, up(f2)], dim=1))
      h = self.up2(torch.cat([f0, up(h)], dim=1))
      return self.head(up(h))

  return ScuNet()


def count_parameters(model) -> int:
  return sum(p.numel() for p in model.parameters() if p.requires_grad)


def soft_dice_loss(logits, target, smooth: float = 1.0):
  """Batch soft Dice of sigmoid probabilities (the JAX method's default loss), `1 − Dice`."""
  probs = logits.sigmoid()
  intersection = (probs * target).sum(dim=(0, 2, 3))
  denominator = (probs + target).sum(dim=(0, 2, 3))
  return 1.0 - ((2 * intersection + smooth) / (denominator + smooth)).mean()


def benchmark_torch_scunet(
  batch: int, size: int, warmup: int = 3, iters: int = 10, device: str = "cpu"
) -> dict:
  """Times SCU-Net's train step in eager PyTorch: forward, Dice backward, AdamW step.

  Args:
    batch: examples per step.
    size: square patch side (a multiple of 8); 3 input channels, 1 class.
    warmup: untimed steps.
    iters: timed steps (at least 1).
    device: torch device string ("cpu", "cuda").

  Returns:
    A report with the same timing fields as `benchmarks.harness` (no FLOPs: PyTorch has no
    compiler cost model; `peak_bytes` from `torch.cuda.max_memory_allocated` on CUDA), or
    `{"skipped": "torch not installed"}`.
  """
  try:
    import torch
  except ImportError:
    return {"leg": "torch", "skipped": "torch not installed"}
  if iters < 1:
    raise ValueError(f"iters={iters} must be ≥ 1.")
  torch.manual_seed(0)
  dev = torch.device(device)
  model = build_scunet().to(dev).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
  images = torch.randn(batch, 3, size, size, device=dev)
  labels = (torch.rand(batch, 1, size, size, device=dev) < 0.1).float()

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = soft_dice_loss(model(images), labels)
    loss.backward()
    optimizer.step()

  times = timed_steps(torch, dev, step, warmup=warmup, iters=iters)
  return torch_report(
    torch,
    dev,
    times=times,
    batch=batch,
    warmup=warmup,
    iters=iters,
    dtype="float32",
    layout="NCHW",
    parameters=count_parameters(model),
  )
