"""A PyTorch ResNet (torchvision's BasicBlock layout and parameter names) for the torch legs.

Written out so the benchmarks need no torchvision; `state_dict()` keys match torchvision's
`resnet18` (`conv1`, `bn1`, `layer{s}.{b}.conv{1,2}`, `…downsample.{0,1}`), which is what
`mlsup_jax.nn.resnet.load_torchvision_weights` reads. `small_input` mirrors `nn/resnet.py`.
"""

from __future__ import annotations

from collections.abc import Sequence


def build_resnet(
  torch, stage_sizes: Sequence[int] = (2, 2, 2, 2), width: int = 64, in_channels: int = 3,
  small_input: bool = False,
):  # fmt: skip
  """`x [B, C, H, W] → pooled features [B, 8·width]` (ResNet-18 with the defaults)."""
  nn = torch.nn

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.relu = nn.ReLU(inplace=True)
      self.downsample = None
      if stride != 1 or cin != cout:
        self.downsample = nn.Sequential(
          nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
        )

    def forward(self, x):
      h = self.relu(self.bn1(self.conv1(x)))
      h = self.bn2(self.conv2(h))
      return self.relu(h + (x if self.downsample is None else self.downsample(x)))

  class ResNet(nn.Module):
    def __init__(self):
      super().__init__()
      if small_input:
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.maxpool = nn.Identity()
      else:
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
      self.bn1 = nn.BatchNorm2d(width)
      cin = width
      for s, blocks in enumerate(stage_sizes):
        cout = width * 2**s
        layer = [Block(cin, cout, 2 if s else 1)] + [
          Block(cout, cout, 1) for _ in range(blocks - 1)
        ]
        setattr(self, f"layer{s + 1}", nn.Sequential(*layer))
        cin = cout
      self.num_features = cin

    def forward(self, x):
      h = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
      for s in range(len(stage_sizes)):
        h = getattr(self, f"layer{s + 1}")(h)
      return h.mean((2, 3))

  return ResNet()
