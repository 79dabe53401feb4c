"""The independent PyTorch meta networks of the MCPM / MW-Net torch leg (`benchmarks/torch_mcpm`).

Written from the layer descriptions of `mlsup_jax/nn/meta.py`, channels-first:

* `MetaMaskNet` (MCPM): the loss map `[B, *S]` as one channel (optionally concatenated with the
  image `[B, C, *S]`) → `len(features)` × (conv k, SAME padding, with bias → ReLU) → conv 1×1
  with bias → sigmoid → per-pixel weights `[B, *S]`.
* `MetaWeightNet` (MW-Net's VNet): per-image losses `[B]` → Linear(1, hidden) → ReLU →
  Linear(hidden, 1) → sigmoid → weights `[B]`.

The segmentation network is the U-Net of `torch_kmax_models` (`build_unet`). The module classes
are built on first use (`_torch_modules`), so importing this module needs no PyTorch.
"""

from __future__ import annotations

import functools
import types


@functools.cache
def _torch_modules() -> types.SimpleNamespace:
  """The `torch.nn.Module` classes (built on first use so that importing needs no PyTorch)."""
  import torch
  from torch import nn

  conv_cls = {2: nn.Conv2d, 3: nn.Conv3d}

  class MetaMaskNet(nn.Module):
    """`loss_map: [B, *S]` (+ `image: [B, C, *S]`) → per-pixel weights `[B, *S]` in [0, 1]."""

    def __init__(self, features=(16, 16), kernel_size=3, dims=2, image_channels=0):
      super().__init__()
      if dims not in conv_cls:
        raise ValueError(f"spatial_dims must be 2 or 3, got {dims}.")
      if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd (SAME padding), got {kernel_size}.")
      self.dims = dims
      layers, cin = [], 1 + image_channels
      for width in features:
        # Odd kernel, stride 1: symmetric k // 2 padding is XLA's SAME.
        layers += [conv_cls[dims](cin, width, kernel_size, padding=kernel_size // 2), nn.ReLU()]
        cin = width
      layers.append(conv_cls[dims](cin, 1, 1))
      self.net = nn.Sequential(*layers)

    def forward(self, loss_map, image=None):
      if loss_map.ndim != self.dims + 1:
        raise ValueError(
          f"expected a loss map [B, *S] of rank {self.dims + 1}, got {loss_map.shape}"
        )
      x = loss_map[:, None]
      if image is not None:
        x = torch.cat([x, image.to(x.dtype)], dim=1)
      return torch.sigmoid(self.net(x)[:, 0])

  class MetaWeightNet(nn.Module):
    """MW-Net's VNet: per-image losses `[B]` → weights `[B]` in [0, 1]."""

    def __init__(self, hidden=100):
      super().__init__()
      self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, losses):
      if losses.ndim != 1:
        raise ValueError(f"expected per-sample losses [B], got shape {tuple(losses.shape)}")
      return torch.sigmoid(self.net(losses[:, None])[:, 0])

  return types.SimpleNamespace(MetaMaskNet=MetaMaskNet, MetaWeightNet=MetaWeightNet)


def build_meta_net(config, image_channels: int = 1):
  """The PyTorch meta network of `config.meta.weighting` (`pixel`, `image`), or None (`none`).

  Args:
    config: an MCPM config (`configs/mcpm.py`).
    image_channels: channels of the image, fed to `MetaMaskNet` when `config.meta.use_image`.
  """
  meta, modules = config.meta, _torch_modules()
  if meta.weighting == "pixel":
    return modules.MetaMaskNet(
      tuple(meta.features),
      meta.kernel_size,
      config.data.spatial_dims,
      image_channels if meta.use_image else 0,
    )
  if meta.weighting == "image":
    return modules.MetaWeightNet(meta.hidden)
  if meta.weighting == "none":
    return None
  raise ValueError(f"Unknown meta.weighting {meta.weighting!r}.")
