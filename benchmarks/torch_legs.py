"""The PyTorch leg of a JAX benchmark: which independent PyTorch step matches a config.

`torch_leg(config, jit_report, warmup, iters)` times, at the jit leg's batch shape, the
PyTorch network of `benchmarks/torch_*.py` that matches `config.model.name` or
`<config.method>/<stage>`; used by `benchmarks.run` and `benchmarks.device_suite`.
"""

from __future__ import annotations

import functools

import jax

from benchmarks import (
  torch_anomaly,
  torch_kmax,
  torch_ltuda,
  torch_mask_rcnn,
  torch_mcpm,
  torch_morse,
  torch_pms,
  torch_scunet,
  torch_semi_supervised,
)

# `config.model.name`, or `<config.method>/<stage>` for methods whose stages train different
# networks → `benchmark(config, batch, warmup, iters, device, image_shape)`.
TORCH_BENCHMARKS = {
  "kmax": torch_kmax.benchmark_torch_kmax,
  "unet": torch_kmax.benchmark_torch_unet,
  "tend/autoencoder": torch_anomaly.benchmark_torch_tend_autoencoder,
  "tend/margin": torch_anomaly.benchmark_torch_tend_margin,
  "cvad/cvae": torch_anomaly.benchmark_torch_cvad_cvae,
  "cvad/discriminator": torch_anomaly.benchmark_torch_cvad_discriminator,
  "mcpm/train": torch_mcpm.benchmark_torch_mcpm,
  "semi_supervised/train": torch_semi_supervised.benchmark_torch_semi_supervised,  # ACTION++
  "morse": torch_morse.benchmark_torch_morse,  # U-Net + MORSE
  "ltuda/cda": functools.partial(torch_ltuda.benchmark_torch_ltuda, stage="cda"),
  "ltuda/cda_pda": functools.partial(torch_ltuda.benchmark_torch_ltuda, stage="cda_pda"),
  "pms/warmup": functools.partial(torch_pms.benchmark_torch_pms, stage="warmup"),
  "pms/pms": functools.partial(torch_pms.benchmark_torch_pms, stage="pms"),
  "mask_rcnn": torch_mask_rcnn.benchmark_torch_mask_rcnn,  # torchvision's Mask R-CNN
}


def torch_leg(config, jit_report: dict, warmup: int, iters: int) -> dict:
  """The PyTorch network at the jit leg's batch shape, on the GPU when JAX has one."""
  model_name = config.model.get("name")
  benchmark = TORCH_BENCHMARKS.get(f"{config.method}/{jit_report.get('stage')}")
  benchmark = benchmark or TORCH_BENCHMARKS.get(model_name)
  if benchmark is not None:
    device = "cuda" if jax.default_backend() == "gpu" else "cpu"
    image_shape = jit_report["input_shapes"]["image"][1:]  # [*S, C].
    return benchmark(config, jit_report["batch_size"], warmup, iters, device, image_shape)
  if model_name != "scunet":
    what = model_name or f"{config.method}/{jit_report.get('stage')}"
    return {"leg": "torch", "skipped": f"no PyTorch implementation of {what!r}"}
  batch, height, width, channels = jit_report["input_shapes"]["image"]
  batch = jit_report["batch_size"]
  if height != width or channels != 3:
    return {"leg": "torch", "skipped": f"needs square 3-channel inputs, got {height}×{width}"}
  device = "cuda" if jax.default_backend() == "gpu" else "cpu"
  return torch_scunet.benchmark_torch_scunet(batch, height, warmup, iters, device)
