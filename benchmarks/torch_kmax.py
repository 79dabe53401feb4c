"""Train-step benchmarks of the independent PyTorch kMaX mask transformer and U-Net.

The PyTorch leg of the MaxQuery configs (`configs/maxquery.py`; DESIGN §3). The models are in
`torch_kmax_models` (same architecture and parameter count as `mlsup_jax/nn/kmax.py` and
`mlsup_jax/nn/unet.py`), the losses in `torch_kmax_losses`; `build_kmax`, `build_unet`,
`count_parameters`, `deep_supervision` and `weighted_sum` are importable from here too.

The step timed is the JAX method's: forward in train mode, the `config.loss` terms, backward,
global-norm gradient clipping (`optimizer.grad_clip_norm`) and `torch.optim.AdamW` with the
config's lr / betas / eps / weight decay (no schedule: it does not change the cost of a step).
PyTorch is optional (`pip install -e .[bench]`) and imported lazily; on CPU with
`OMP_WAIT_POLICY=PASSIVE` by default (`_import_torch`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from benchmarks.torch_kmax_losses import deep_supervision, weighted_sum
from benchmarks.torch_kmax_models import build_kmax, build_unet, count_parameters
from benchmarks.torch_report import timed_steps, torch_report


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

  def step():
    optimizer.zero_grad(set_to_none=True)
    with autocast():
      outputs = model(images)
    loss = loss_fn(outputs, labels)
    loss.backward()
    if opt.grad_clip_norm:
      torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip_norm)
    optimizer.step()

  times = timed_steps(torch, dev, step, warmup=warmup, iters=iters)
  return torch_report(
    torch,
    dev,
    times=times,
    batch=batch,
    warmup=warmup,
    iters=iters,
    dtype=dtype,
    layout="NCHW" if len(spatial) == 2 else "NCDHW",
    parameters=count_parameters(model),
  )


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
    lambda outputs, labels: deep_supervision(
      config.loss, outputs, labels, config.train.deep_supervision_weight
    ),
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
