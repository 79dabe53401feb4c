"""Train-step benchmark of an independent PyTorch MCPM / MW-Net meta step (the `mcpm` torch leg).

The step of `mlsup_jax/methods/mcpm.py`, written again in eager PyTorch with `torch.func`:

1. virtual step `W'(Θ) = W − α ∇_W mean(R_Θ(ℓ(W)) · ℓ(W))` on the noisy batch — an inner
   `torch.func.grad` of the U-Net run with `torch.func.functional_call` on a dict of parameters;
2. meta update: `torch.func.grad_and_value` of the meta loss (`config.loss` on the clean meta
   batch) at `W'(Θ)` with respect to Θ — the second-order gradient through step 1 — then the
   meta optimizer (`torch.optim.Adam(weight_decay=…)`: optax's coupled-L2 "adam"; AdamW for
   "adamw");
3. real step: `loss.backward()` of the weighted loss with the new, detached Θ, then
   `torch.optim.SGD(momentum, nesterov, weight_decay)` (optax's `add_decayed_weights` → `sgd`).

As in the JAX method: ℓ is the per-pixel cross-entropy; the loss map is detached as the meta
network's input; R is divided by its batch mean when `config.meta.normalize`; α is
`config.meta.inner_lr`, or the segmentation optimizer's current learning rate when 0 (its constant /
cosine schedule is reproduced, so α and the real step's lr match optax's at every step); Θ is
updated on steps with `step % meta_every == 0` only; `weighting="none"` (the `variant=unet`
baseline) is the plain weighted-loss step without steps 1–2. `config.meta.remat` has no PyTorch
counterpart here (`torch.utils.checkpoint` does not compose with `torch.func` transforms); the leg
reports it and times the step without.

Networks: the U-Net of `torch_kmax_models` and the meta nets of `torch_mcpm_models`, built from
the config. PyTorch is optional (`pip install -e .[bench]`) and imported lazily, on CPU with
`OMP_WAIT_POLICY=PASSIVE` by default (`torch_kmax._import_torch`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from benchmarks.torch_kmax import _import_torch
from benchmarks.torch_kmax_losses import weighted_sum
from benchmarks.torch_kmax_models import build_unet, count_parameters
from benchmarks.torch_mcpm_models import build_meta_net
from benchmarks.torch_report import timed_steps, torch_report
from mlsup_jax.methods.mcpm import NORMALIZE_FLOOR


def learning_rate(opt_config, num_steps: int, step: int) -> float:
  """optax's `learning_rate_schedule` (`mlsup_jax/core/optimizers.py`) at `step`.

  Linear warm-up over `warmup_steps`, then constant or cosine decay to 0 over the rest.
  """
  lr, warmup = float(opt_config.learning_rate), int(opt_config.warmup_steps)
  if step < warmup:
    return lr * step / warmup
  if opt_config.schedule == "constant":
    return lr
  if opt_config.schedule != "cosine":
    raise ValueError(f"Unknown optimizer.schedule {opt_config.schedule!r}.")
  decay_steps = max(num_steps - warmup, 1)
  t = min(step - warmup, decay_steps) / decay_steps
  return lr * 0.5 * (1.0 + math.cos(math.pi * t))


def build_optimizer(torch, opt_config, parameters):
  """The PyTorch optimizer of `opt_config` (`name`: sgd, adam or adamw; no gradient clipping)."""
  if opt_config.grad_clip_norm:
    raise ValueError("The MCPM torch leg does not implement grad_clip_norm.")
  lr, wd = float(opt_config.learning_rate), float(opt_config.weight_decay)
  if opt_config.name == "sgd":
    momentum = float(opt_config.momentum or 0.0)
    nesterov = bool(opt_config.nesterov)
    return torch.optim.SGD(parameters, lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
  betas, eps = (opt_config.b1, opt_config.b2), opt_config.eps
  if opt_config.name == "adam":
    return torch.optim.Adam(parameters, lr, betas=betas, eps=eps, weight_decay=wd)
  if opt_config.name == "adamw":
    return torch.optim.AdamW(parameters, lr, betas=betas, eps=eps, weight_decay=wd)
  raise ValueError(f"Unknown optimizer.name {opt_config.name!r}.")


class McpmStep:
  """The MCPM / MW-Net / plain train step in PyTorch (module docstring); `step(batch)` runs one.

  Batches are channels-first: `{"image": [B, C, *S] float32, "label": [B, *S] int64,
  "meta": {"image", "label"}}` (`meta` only when the config has a meta network).

  Attributes:
    model: the segmentation U-Net (`torch.nn.Module`, train mode).
    meta_model: the meta network, or None for `weighting="none"`.
    optimizer, meta_optimizer: their PyTorch optimizers (`meta_optimizer` None without one).
    step_count: steps taken (the optax step counter).
  """

  def __init__(self, config, model, meta_model):
    import torch

    self.torch = torch
    self.config = config
    self.model = model.train()
    self.meta_model = meta_model
    self.optimizer = build_optimizer(torch, config.optimizer, model.parameters())
    self.meta_optimizer = None
    if meta_model is not None:
      self.meta_optimizer = build_optimizer(torch, config.meta.optimizer, meta_model.parameters())
    self.step_count = 0

  # --------------------------------------------------------------------------- the objectives

  def pixel_loss(self, logits, labels):
    """Per-pixel cross-entropy: `logits [B, K, *S]`, `labels [B, *S]` → `[B, *S]`."""
    from torch.nn import functional as F

    smoothing = float(self.config.loss.train.cross_entropy.label_smoothing)
    if logits.shape[1] == 1:  # Sigmoid output: binary CE with target `label == 1`.
      target = (labels == 1).to(logits.dtype)
      return F.binary_cross_entropy_with_logits(logits[:, 0], target, reduction="none")
    return F.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)

  def weights(self, meta_params, loss_map, image):
    """Weights `[B, *S]` of `loss_map: [B, *S]` (detached: R depends on Θ only, never on W)."""
    if self.meta_model is None:
      return self.torch.ones_like(loss_map)
    loss_map = loss_map.detach()
    call = self.torch.func.functional_call
    if self.config.meta.weighting == "image":  # Per-image mean loss → one weight per image.
      w = call(self.meta_model, meta_params, (loss_map.flatten(1).mean(dim=1),))
      w = w.reshape((-1,) + (1,) * (loss_map.ndim - 1)).expand_as(loss_map)
    else:
      image = image if self.config.meta.use_image else None
      w = call(self.meta_model, meta_params, (loss_map, image))
    if self.config.meta.normalize:  # Batch mean 1, floored as in the JAX method.
      w = w / w.mean().clamp_min(NORMALIZE_FLOOR)
    return w

  def weighted_loss(self, params, meta_params, image, label):
    """`mean(R_Θ · ℓ(W))` → `(loss, (loss_map [B, *S], weights [B, *S]))`."""
    logits = self.torch.func.functional_call(self.model, params, (image,))
    loss_map = self.pixel_loss(logits, label)
    weights = self.weights(meta_params, loss_map, image)
    return (weights * loss_map).mean(), (loss_map, weights)

  def virtual_params(self, meta_params, params, batch, inner_lr: float) -> dict:
    """`W'(Θ) = W − α ∇_W mean(R_Θ · ℓ(W))`: one plain SGD step, a function of Θ."""

    def loss(p):
      return self.weighted_loss(p, meta_params, batch["image"], batch["label"])[0]

    grads = self.torch.func.grad(loss)(params)
    return {k: w - inner_lr * grads[k] for k, w in params.items()}

  def meta_objective(self, meta_params, params, batch, inner_lr: float):
    """`L_meta(W'(Θ))`: the `config.loss.meta` terms on the clean meta batch `batch["meta"]`."""
    new_params = self.virtual_params(meta_params, params, batch, inner_lr)
    meta = batch["meta"]
    logits = self.torch.func.functional_call(self.model, new_params, (meta["image"],))
    return weighted_sum(self.config.loss.meta, {"logits": logits}, meta["label"])

  def meta_gradient(self, meta_params, params, batch, inner_lr: float):
    """`(meta loss, ∇_Θ meta loss)`: one `torch.func.grad` through the virtual step."""
    grads, loss = self.torch.func.grad_and_value(self.meta_objective)(
      meta_params, params, batch, inner_lr
    )
    return loss, grads

  def inner_lr(self, step: int) -> float:
    """α: `config.meta.inner_lr`, or the optimizer's learning rate at `step` when it is 0."""
    if self.config.meta.inner_lr > 0:
      return float(self.config.meta.inner_lr)
    return learning_rate(self.config.optimizer, self.config.train.num_steps, step)

  # ------------------------------------------------------------------------------------ step

  def step(self, batch: dict) -> dict:
    """One train step (meta update when due, then the real step) → metrics (Python floats)."""
    torch, step = self.torch, self.step_count
    metrics = {}
    detached = lambda module: {k: v.detach() for k, v in module.named_parameters()}
    if self.meta_model is not None and step % int(self.config.meta.meta_every) == 0:
      meta_loss, grads = self.meta_gradient(
        detached(self.meta_model), detached(self.model), batch, self.inner_lr(step)
      )
      for name, p in self.meta_model.named_parameters():
        p.grad = grads[name]
      self.meta_optimizer.step()
      metrics["meta_loss"] = meta_loss.item()
    lr = learning_rate(self.config.optimizer, self.config.train.num_steps, step)
    for group in self.optimizer.param_groups:
      group["lr"] = lr
    self.optimizer.zero_grad(set_to_none=True)
    meta_params = None if self.meta_model is None else detached(self.meta_model)
    params = dict(self.model.named_parameters())
    loss, (loss_map, weights) = self.weighted_loss(
      params, meta_params, batch["image"], batch["label"]
    )
    loss.backward()
    self.optimizer.step()
    self.step_count += 1
    with torch.no_grad():
      metrics.update(loss=loss.item(), weight_mean=weights.mean().item())
    return metrics


def _image_shape(config, image_shape: Sequence[int] | None) -> tuple[int, ...]:
  """`[*S, C]` (channels-last, as the JAX batch): given, or the config's phantom size."""
  if image_shape is not None:
    return tuple(int(n) for n in image_shape)
  source = config.data.train_source
  size = source.base.image_size if "base" in source else source.image_size
  return (*(size,) * config.data.spatial_dims, 1)


def benchmark_torch_mcpm(
  config,
  batch: int,
  warmup: int = 3,
  iters: int = 10,
  device: str = "cpu",
  image_shape: Sequence[int] | None = None,
) -> dict:
  """Times the MCPM / MW-Net / plain U-Net train step of `config` in eager PyTorch.

  Args:
    config: an MCPM config (`configs/mcpm.py`, any variant).
    batch: examples per step (the meta batch has as many, as in the JAX pipeline).
    warmup: untimed steps.
    iters: timed steps (at least 1).
    device: torch device string ("cpu", "cuda").
    image_shape: `[*S, C]` of one image (the JAX batch's, channels last); default: the config's
      phantom size with one channel.

  Returns:
    The report of `torch_report.torch_report` (same keys as the JAX legs') with the meta
    network's parameter count, or `{"skipped": ...}` without PyTorch.
  """
  try:
    torch = _import_torch(device)
  except ImportError:
    return {"leg": "torch", "skipped": "torch not installed"}
  if iters < 1:
    raise ValueError(f"iters={iters} must be ≥ 1.")
  if str(config.model.get("dtype", "float32")) != "float32":
    return {"leg": "torch", "skipped": f"float32 only, got {config.model.dtype}"}
  torch.manual_seed(0)
  dev = torch.device(device)
  *spatial, channels = _image_shape(config, image_shape)
  model = build_unet(config, channels).to(dev)
  meta_model = build_meta_net(config, channels)
  meta_model = None if meta_model is None else meta_model.to(dev)
  step = McpmStep(config, model, meta_model)
  k = config.model.num_classes

  def examples():
    images = torch.randn(batch, channels, *spatial, device=dev)
    return images, torch.randint(0, k, (batch, *spatial), device=dev)

  (image, label), (meta_image, meta_label) = examples(), examples()
  data = {"image": image, "label": label}
  if meta_model is not None:
    data["meta"] = {"image": meta_image, "label": meta_label}
  # `.item()` of the metrics waits for the step, as block_until_ready.
  times = timed_steps(torch, dev, lambda: step.step(data), warmup=warmup, iters=iters)
  report = torch_report(
    torch,
    dev,
    times=times,
    batch=batch,
    warmup=warmup,
    iters=iters,
    dtype="float32",
    layout="NCHW" if len(spatial) == 2 else "NCDHW",
    parameters=count_parameters(model),
  )
  report["meta_parameters"] = 0 if meta_model is None else count_parameters(meta_model)
  every = int(config.meta.meta_every)
  report["note"] += (
    f"; torch.func second-order meta step ({config.meta.weighting} weights), meta_every={every}"
  )
  if config.meta.remat:
    report["note"] += "; remat has no torch counterpart: timed without"
  return report
