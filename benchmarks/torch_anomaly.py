"""Train-step benchmarks of the independent PyTorch TEND and CVAD networks (their torch legs).

The networks are in `torch_anomaly_models` (same architecture and parameter count as
`mlsup_jax/nn/autoencoder.py` and `mlsup_jax/nn/cvae.py`); the losses below re-implement the
registered terms of `mlsup_jax/losses/anomaly.py` for batches without evaluation padding, under
the same names, so `weighted_sum` reads `config.loss.<stage>` as the JAX methods do.

The steps timed are the JAX methods' (`methods/tend.py`, `methods/cvad.py`), in eager PyTorch:

* `tend/autoencoder`: auto-encoder forward (train mode), `loss.autoencoder` (MSE), backward, step.
* `tend/margin`: classifier forward on the B originals and their B distorted versions as one
  batch of 2B, `loss.classifier` (BCE + margin loss around a fixed centre), backward, step.
* `cvad/cvae`: cascade-VAE forward (sampled latents), `loss.cvae`, backward, step.
* `cvad/discriminator`: the frozen generator in eval mode makes I′ (and I″ when
  `model.perturb_scale > 0`) without gradients; the discriminator sees reals and fakes as one
  batch; `loss.discriminator` (BCE), backward, step.

The optimizer is the config's: `torch.optim.Adam(weight_decay=…)` is Adam with the coupled L2
decay of `optimizer.name == "adam"` (optax `add_decayed_weights` → `adam`), `AdamW` for
"adamw"; no schedule (it does not change the cost of a step). PyTorch is optional
(`pip install -e .[bench]`) and imported lazily, on CPU with `OMP_WAIT_POLICY=PASSIVE` by default
(`torch_kmax._import_torch`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from benchmarks.torch_anomaly_models import (
  build_cascade_vae,
  build_discriminator,
  build_tend_autoencoder,
  build_tend_classifier,
  count_parameters,
)
from benchmarks.torch_kmax import _import_torch
from benchmarks.torch_report import timed_steps, torch_report
from mlsup_jax.losses.layout import active_terms

__all__ = [
  "build_cascade_vae",
  "build_discriminator",
  "build_tend_autoencoder",
  "build_tend_classifier",
  "count_parameters",
]

# ------------------------------------------------------------------------------------ losses


def reconstruction_error(reconstruction, image):
  """Per-image mean squared error: `[B, C, H, W]` × 2 → `[B]`."""
  return (reconstruction.float() - image.float()).square().flatten(1).mean(dim=1)


def gaussian_kl(mu, logvar):
  """`KL(N(μ, σ²) ‖ N(0, I))` summed over the latent dims: `[B, K]` × 2 → `[B]`."""
  return -0.5 * (1.0 + logvar - mu.square() - logvar.exp()).flatten(1).sum(dim=1)


def _masked_mean(values, weights):
  """`Σ w·v / max(Σ w, 1)`: 0 for an empty group, as the JAX losses."""
  return (values * weights).sum() / weights.sum().clamp_min(1.0)


def reconstruction_mse(outputs: dict, batch: dict):
  """`mean_i MSE(I′_i, I_i)` of `outputs["reconstruction"]` and `batch["image"]`."""
  return reconstruction_error(outputs["reconstruction"], batch["image"]).mean()


def classification_bce(outputs: dict, batch: dict, label_smoothing: float = 0.0):
  """Mean BCE of `outputs["logit"] [B]` against `batch["label"] [B]` (1 = transformed), the
  targets smoothed to ε/2 and 1 − ε/2 by `label_smoothing` ε."""
  from torch.nn import functional as F

  targets = batch["label"].float() * (1.0 - label_smoothing) + 0.5 * label_smoothing
  return F.binary_cross_entropy_with_logits(outputs["logit"].float(), targets)


def tend_margin(outputs: dict, batch: dict, margin: float = 250.0):
  """TEND's margin loss: `mean_{y=0} d + mean_{y=1} relu(R − d)`, d = ‖c − O‖² (squared).

  Args:
    outputs: `features [B, K]` (c) and `centre [K]` (O).
    batch: `label [B]`, 0 = original, 1 = transformed.
    margin: R, a threshold on the squared distance.
  """
  distance = (outputs["features"].float() - outputs["centre"].float()).square().sum(dim=-1)
  is_out = batch["label"].float()
  loss_in = _masked_mean(distance, 1.0 - is_out)
  return loss_in + _masked_mean((margin - distance).relu(), is_out)


def cvae(
  outputs: dict,
  batch: dict,
  alpha1: float = 1.0,
  alpha2: float = 1.0,
  beta: float = 1.0,
  kl_normalisation: str = "pixels",
  reconstruction_target: str = "combined",
):
  """CVAD's CVAE loss (Eq. 4.7), the batch mean of the per-example loss.

  "combined": `MSE(I′) + β(α1 KL1 + α2 KL2) / n`; "separate": `α1 (MSE(I′1) + β KL1 / n) +
  α2 (MSE(I′2) + β KL2 / n)`; `n = C·H·W` ("pixels": the batch's KL over B·C·H·W, the
  authors' code) or 1 ("batch").

  Args:
    outputs: `CascadeVAE` outputs (`[B, C, H, W]` reconstructions, `mu*`, `logvar*`).
    batch: `image [B, C, H, W]`.
    alpha1, alpha2, beta, kl_normalisation, reconstruction_target: as the JAX `cvae_loss`.
  """
  image = batch["image"]
  divisor = {"pixels": float(image[0].numel()), "batch": 1.0}[kl_normalisation]
  kl1 = beta * gaussian_kl(outputs["mu1"], outputs["logvar1"]) / divisor
  kl2 = beta * gaussian_kl(outputs["mu2"], outputs["logvar2"]) / divisor
  if reconstruction_target == "combined":
    per_example = reconstruction_error(outputs["reconstruction"], image) + alpha1 * kl1
    per_example = per_example + alpha2 * kl2
  elif reconstruction_target == "separate":
    primary = reconstruction_error(outputs["reconstruction_primary"], image) + kl1
    branch = reconstruction_error(outputs["reconstruction_branch"], image) + kl2
    per_example = alpha1 * primary + alpha2 * branch
  else:
    raise ValueError(f"Unknown reconstruction_target {reconstruction_target!r}.")
  return per_example.mean()


def discriminator_bce(outputs: dict, batch: dict):
  """`BCE(real_logit, 0) + BCE(fake_logit, 1)`, each a mean (ID = 0, fakes = 1)."""
  from torch.nn import functional as F

  del batch
  real, fake = outputs["real_logit"].float(), outputs["fake_logit"].float()
  return F.binary_cross_entropy_with_logits(
    real, real.new_zeros(real.shape)
  ) + F.binary_cross_entropy_with_logits(fake, fake.new_ones(fake.shape))


LOSSES: dict[str, Callable] = {
  "reconstruction_mse": reconstruction_mse,
  "classification_bce": classification_bce,
  "tend_margin": tend_margin,
  "cvae": cvae,
  "discriminator_bce": discriminator_bce,
}


def weighted_sum(loss_config, outputs: dict, batch: dict):
  """`Σ weight · term(outputs, batch, **hparams)` over the active terms of a loss section."""
  total = 0.0
  for name, weight, hparams in active_terms(loss_config):
    total = total + weight * LOSSES[name](outputs, batch, **hparams)
  return total


# ------------------------------------------------------------------------------- train steps


def make_optimizer(torch, parameters, opt_config):
  """The config's optimizer: Adam with coupled L2 decay ("adam") or AdamW ("adamw")."""
  cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(opt_config.name)
  if cls is None:
    raise ValueError(f"The torch leg supports adam and adamw, not {opt_config.name!r}.")
  return cls(
    parameters,
    lr=opt_config.learning_rate,
    betas=(opt_config.b1, opt_config.b2),
    eps=opt_config.eps,
    weight_decay=opt_config.weight_decay,
  )


def _update(torch, loss, optimizer, opt_config):
  """Backward, optional global-norm clipping, optimizer step; returns the detached loss."""
  optimizer.zero_grad(set_to_none=True)
  loss.backward()
  if opt_config.grad_clip_norm:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, opt_config.grad_clip_norm)
  optimizer.step()
  return loss.detach()


def originals_and_distorted(batch: dict) -> dict:
  """`image, distorted [B, C, H, W]` → `image [2B, C, H, W]`, `label [2B]` (0 / 1)."""
  import torch

  image, b = batch["image"], batch["image"].shape[0]
  label = torch.cat([image.new_zeros(b), image.new_ones(b)])
  return {"image": torch.cat([image, batch["distorted"]]), "label": label}


def trainable(model):
  return [p for p in model.parameters() if p.requires_grad]


# ------------------------------------------------------------------------------- benchmarks


def _image_shape(config, image_shape: Sequence[int] | None) -> tuple[int, int, int]:
  """`[H, W, C]` (channels last, as the JAX batch): given, or the config's, one channel."""
  if image_shape is not None:
    return tuple(int(n) for n in image_shape)
  size = config.data.train_source.base.image_size
  return (size, size, 1)


def _benchmark(config, make_step, batch, warmup, iters, device, image_shape) -> dict:
  """Times `step()` of `make_step(torch, dev, images, image_shape) → (step, trained model)`."""
  try:
    torch = _import_torch(device)
  except ImportError:
    return {"leg": "torch", "skipped": "torch not installed"}
  if iters < 1:
    raise ValueError(f"iters={iters} must be ≥ 1.")
  torch.manual_seed(0)
  dev = torch.device(device)
  height, width, channels = shape = _image_shape(config, image_shape)
  images = torch.rand(batch, channels, height, width, device=dev)  # In [0, 1], as the data.
  step, model = make_step(torch, dev, images, shape)
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


def benchmark_torch_tend_autoencoder(
  config,
  batch: int,
  warmup: int = 3,
  iters: int = 10,
  device: str = "cpu",
  image_shape: Sequence[int] | None = None,
) -> dict:
  """Times TEND's stage-1 step in eager PyTorch: auto-encoder forward, MSE, Adam.

  Args:
    config: a TEND config (`configs/tend.py`).
    batch: examples per step.
    warmup: untimed steps.
    iters: timed steps (at least 1).
    device: torch device string ("cpu", "cuda").
    image_shape: `[H, W, C]` of one image (the JAX batch's, channels last); default: the
      config's image size with one channel.

  Returns:
    The report of `torch_kmax.benchmark_torch_kmax` (same keys; `parameters` of the trained
    network), or `{"skipped": ...}` without PyTorch.
  """

  def make_step(torch, dev, images, shape):
    model = build_tend_autoencoder(config, shape).to(dev).train()
    optimizer = make_optimizer(torch, model.parameters(), config.optimizer)
    data = {"image": images}

    def step():
      loss = weighted_sum(config.loss.autoencoder, model(images), data)
      return _update(torch, loss, optimizer, config.optimizer)

    return step, model

  return _benchmark(config, make_step, batch, warmup, iters, device, image_shape)


def benchmark_torch_tend_margin(
  config,
  batch: int,
  warmup: int = 3,
  iters: int = 10,
  device: str = "cpu",
  image_shape: Sequence[int] | None = None,
) -> dict:
  """Times TEND's margin-stage step: classifier on 2B images, BCE + margin loss, Adam.

  `batch` originals and as many distorted images (random, like the originals: the distortion
  is the input pipeline's) make one classifier batch of 2·`batch`; the centre is a fixed random
  `[K]` vector. Arguments and report as `benchmark_torch_tend_autoencoder`.
  """

  def make_step(torch, dev, images, shape):
    model = build_tend_classifier(config, shape).to(dev).train()
    optimizer = make_optimizer(torch, trainable(model), config.optimizer)
    pair = {"image": images, "distorted": torch.rand_like(images)}
    centre = torch.randn(config.model.feature_dim, device=dev)

    def step():
      data = originals_and_distorted(pair)  # In the step, as the JAX one.
      outputs = {**model(data["image"]), "centre": centre}
      loss = weighted_sum(config.loss.classifier, outputs, data)
      return _update(torch, loss, optimizer, config.optimizer)

    return step, model

  return _benchmark(config, make_step, batch, warmup, iters, device, image_shape)


def benchmark_torch_cvad_cvae(
  config,
  batch: int,
  warmup: int = 3,
  iters: int = 10,
  device: str = "cpu",
  image_shape: Sequence[int] | None = None,
) -> dict:
  """Times CVAD's stage-1 step: cascade-VAE forward (sampled latents), CVAE loss, Adam.

  Arguments and report as `benchmark_torch_tend_autoencoder`, for a CVAD config
  (`configs/cvad.py`).
  """

  def make_step(torch, dev, images, shape):
    model = build_cascade_vae(config, shape).to(dev).train()
    opt_config = config.optimizer.generator
    optimizer = make_optimizer(torch, model.parameters(), opt_config)
    data = {"image": images}

    def step():
      loss = weighted_sum(config.loss.cvae, model(images), data)
      return _update(torch, loss, optimizer, opt_config)

    return step, model

  return _benchmark(config, make_step, batch, warmup, iters, device, image_shape)


def benchmark_torch_cvad_discriminator(
  config,
  batch: int,
  warmup: int = 3,
  iters: int = 10,
  device: str = "cpu",
  image_shape: Sequence[int] | None = None,
) -> dict:
  """Times CVAD's stage-2 step: frozen generator (eval, no grad) → discriminator BCE, Adam.

  The discriminator sees `batch` reals and their I′ (and I″) as one batch. Arguments and
  report as `benchmark_torch_tend_autoencoder`, for a CVAD config.
  """

  def make_step(torch, dev, images, shape):
    generator = build_cascade_vae(config, shape).to(dev).eval()
    for p in generator.parameters():
      p.requires_grad_(False)
    model = build_discriminator(config, shape).to(dev).train()
    opt_config = config.optimizer.discriminator
    optimizer = make_optimizer(torch, model.parameters(), opt_config)
    perturb = config.model.perturb_scale > 0

    def step():
      with torch.no_grad():
        fakes = generator(images, perturb=perturb)
      fake = [fakes["reconstruction"]] + ([fakes["perturbed"]] if perturb else [])
      logits = model(torch.cat([images, *fake]))
      outputs = {"real_logit": logits[:batch], "fake_logit": logits[batch:]}
      loss = weighted_sum(config.loss.discriminator, outputs, {})
      return _update(torch, loss, optimizer, opt_config)

    return step, model

  return _benchmark(config, make_step, batch, warmup, iters, device, image_shape)
