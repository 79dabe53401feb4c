"""Train-step benchmark of an independent PyTorch PMS step (the `pms` torch leg).

The step of `mlsup_jax/methods/pms.py` written again in eager PyTorch as the authors' `pms.py`
is organised: a ResNet-18 (`torch_resnet.py`, torchvision's layout), one `Linear(F, k·N)` + ReLU
split into k class-wise embeddings, one `Linear(N, 1)` head per finding (a `ModuleList`, as the
code), `nn.BCELoss` on the sigmoids, Adam (weight decay 1e-5), and

* stage `warmup`: after the update, each finding's positive embeddings (detached) are written
  into its ring of M slots — a Python loop over findings with index arithmetic (a correct ring,
  unlike the code's wrap-around);
* stage `pms`: fixed proxies; loss 0.25·BCE + 0.75·PMS (eq. 6.2–6.3, masked means per finding,
  a Python loop over findings as the code).

PyTorch is optional (`pip install -e .[bench]`) and imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.torch_kmax import _import_torch
from benchmarks.torch_kmax_models import count_parameters
from benchmarks.torch_report import timed_steps, torch_report
from benchmarks.torch_resnet import build_resnet


def build_pms_network(torch, config, in_channels: int):
  """The ResNet + class-wise branches + per-finding heads of `config.model`."""
  nn = torch.nn
  m = config.model
  k, n = int(m.num_classes), int(m.embedding_dim)
  width = max(1, int(round(64 * m.width_multiplier)))

  class PMSNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.backbone = build_resnet(torch, tuple(m.stage_sizes), width, in_channels, m.small_input)
      self.branches = nn.Linear(self.backbone.num_features, k * n)
      self.heads = nn.ModuleList([nn.Linear(n, 1) for _ in range(k)])

    def forward(self, x):
      e = self.branches(self.backbone(x)).reshape(-1, k, n)
      e = torch.relu(e) if m.relu else e
      logits = torch.cat([head(e[:, i]) for i, head in enumerate(self.heads)], dim=1)
      return e, torch.sigmoid(logits)

  return PMSNet()


def benchmark_torch_pms(
  config,
  batch: int,
  warmup: int = 3,
  iters: int = 10,
  device: str = "cpu",
  image_shape: Sequence[int] | None = None,
  stage: str = "warmup",
) -> dict:
  """Times the PyTorch PMS step (module docstring) at the JAX leg's shapes.

  Args:
    config: a `configs/pms.py` config.
    batch: images per step.
    warmup, iters: untimed and timed steps.
    device: "cpu" or "cuda".
    image_shape: `[H, W, C]` of one example.
    stage: "warmup" (BCE + bank update) or "pms" (BCE + PMS with fixed proxies).
  """
  try:
    torch = _import_torch(device)
  except ImportError:
    return {"leg": "torch", "skipped": "torch not installed"}
  torch.manual_seed(0)
  dev = torch.device(device)
  height, width, channels = image_shape
  k, n = int(config.model.num_classes), int(config.model.embedding_dim)
  size = int(config.memory.size)
  model = build_pms_network(torch, config, channels).to(dev).train()
  optimizer = torch.optim.Adam(
    model.parameters(), lr=config.optimizer.learning_rate,
    weight_decay=config.optimizer.weight_decay,
  )  # fmt: skip
  images = torch.randn(batch, channels, height, width, device=dev)
  labels = (torch.rand(batch, k, device=dev) < 0.2).float()
  bank = torch.zeros(k, size, n, device=dev)
  pointer, count = [0] * k, [0] * k
  proxies = torch.nn.functional.normalize(torch.rand(k, n, device=dev), dim=-1)
  tau = labels.mean(0)
  bce = torch.nn.BCELoss()

  def step():
    optimizer.zero_grad(set_to_none=True)
    e, p = model(images)
    loss = bce(p, labels)
    if stage == "pms":
      cos = torch.nn.functional.cosine_similarity(e, proxies[None], dim=-1)  # [B, k]
      pms = 0.0
      for i in range(k):  # the code's per-class loop
        pos, neg = labels[:, i] > 0.5, labels[:, i] < 0.5
        if pos.any():
          pms = pms + (1 - tau[i]) * (1 - cos[pos, i]).mean()
        if neg.any():
          pms = pms + tau[i] * (1 + cos[neg, i]).mean()
      loss = 0.25 * loss + 0.75 * pms / k
    loss.backward()
    optimizer.step()
    if stage == "warmup":
      with torch.no_grad():
        for i in range(k):
          rows = e[labels[:, i] > 0.5, i].detach()[-size:]
          if not len(rows):
            continue
          slots = (pointer[i] + torch.arange(len(rows), device=dev)) % size
          bank[i, slots] = rows
          pointer[i] = (pointer[i] + int((labels[:, i] > 0.5).sum())) % size
          count[i] = min(size, count[i] + len(rows))

  times = timed_steps(torch, dev, step, warmup=warmup, iters=iters)
  return torch_report(
    torch, dev, times=times, batch=batch, warmup=warmup, iters=iters, dtype="float32",
    layout="NCHW", parameters=count_parameters(model),
  )  # fmt: skip
