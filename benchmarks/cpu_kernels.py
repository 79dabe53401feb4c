r"""XLA against PyTorch on the kernels a CPU step spends its time in: convolutions and matmul.

  taskset -c 1 python -m benchmarks.cpu_kernels
  taskset -c 1 python -m benchmarks.cpu_kernels --convs=8x64x16x16,8x16x64x16x32 --matmul=1024

Each 3×3 (2-D: `BxHxCinxCout`) or 3×3×3 (3-D: `BxDxHxCinxCout`) "SAME" convolution (batch,
[depth,] height = width, channels in and out; channels-last for XLA, channels-first for PyTorch)
is timed forward and forward + backward (input and kernel gradients of a sum of squares), and one
`n × n` matmul, both frameworks on one thread (PyTorch: `torch.set_num_threads(1)`; pin the
process to one core so XLA's pool has one too). Prints GFLOP/s (a convolution's forward counts
`2 · outputs · Cin · taps` FLOPs, forward + backward three times that), medians of `--iters`
timed calls after one untimed call. docs/results/loop.md uses it to attribute the MaxQuery and
TEND CPU gaps to XLA's convolutions.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

# MaxQuery's default backbone (2-D, 64², batch 8) and a 3-D one.
DEFAULT_CONVS = (
  "8x64x16x16",
  "8x32x32x32",
  "8x16x64x64",
  "8x8x128x128",
  "8x16x64x16x32",
  "8x8x32x32x64",
  "8x4x16x64x128",
)


def _median_seconds(fn, iters: int) -> float:
  fn()
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def conv_gflops(shape: str, iters: int = 5) -> dict[str, float]:
  """XLA and PyTorch GFLOP/s of one 3×3 or 3×3×3 convolution, forward and forward + backward.

  Args:
    shape: `"BxHxCinxCout"` (2-D) or `"BxDxHxCinxCout"` (3-D).
    iters: timed calls per measurement.

  Returns:
    `{"xla_forward", "torch_forward", "xla_train", "torch_train"}` in GFLOP/s.

  Example:
    >>> row = conv_gflops("1x4x8x2x4", iters=1)  # doctest: +SKIP
  """
  import torch  # optional benchmark dependency

  torch.set_num_threads(1)
  dims = [int(v) for v in shape.split("x")]
  if len(dims) not in (4, 5):
    raise ValueError(f"Convolution {shape!r}: expected BxHxCinxCout or BxDxHxCinxCout.")
  batch, *space, size, c_in, c_out = dims
  spatial = (*space, size, size)
  rank = len(spatial)
  rng = np.random.default_rng(0)
  x = rng.random((batch, *spatial, c_in), np.float32)
  w = 0.1 * rng.random((3,) * rank + (c_in, c_out), np.float32)
  flops = 2 * batch * int(np.prod(spatial)) * c_in * c_out * 3**rank
  numbers = ("NHWC", "HWIO", "NHWC") if rank == 2 else ("NDHWC", "DHWIO", "NDHWC")
  torch_conv = torch.nn.functional.conv2d if rank == 2 else torch.nn.functional.conv3d

  def loss(x, w):
    y = jax.lax.conv_general_dilated(x, w, (1,) * rank, "SAME", dimension_numbers=numbers)
    return jnp.sum(y * y)

  forward, grads = jax.jit(loss), jax.jit(jax.grad(loss, (0, 1)))
  xj, wj = jnp.asarray(x), jnp.asarray(w)
  to_first = (0, rank + 1, *range(1, rank + 1))  # channels-last → channels-first
  xt = torch.tensor(x).permute(*to_first).contiguous().requires_grad_()
  wt = torch.tensor(w).permute(rank + 1, rank, *range(rank)).contiguous().requires_grad_()

  def torch_forward():
    with torch.no_grad():
      float((torch_conv(xt, wt, padding=1) ** 2).sum())

  def torch_train():
    (torch_conv(xt, wt, padding=1) ** 2).sum().backward()

  # The same convolution in both layouts (else the comparison would be of different work).
  ours = float(forward(xj, wj))
  with torch.no_grad():
    theirs = float((torch_conv(xt, wt, padding=1) ** 2).sum())
  if not np.isclose(ours, theirs, rtol=1e-4):
    raise AssertionError(f"XLA and PyTorch convolutions differ: {ours} vs {theirs}")
  seconds = {
    "xla_forward": _median_seconds(lambda: forward(xj, wj).block_until_ready(), iters),
    "torch_forward": _median_seconds(torch_forward, iters),
    "xla_train": _median_seconds(lambda: jax.block_until_ready(grads(xj, wj)), iters),
    "torch_train": _median_seconds(torch_train, iters),
  }
  return {k: (3 if k.endswith("train") else 1) * flops / v / 1e9 for k, v in seconds.items()}


def matmul_gflops(n: int, iters: int = 5) -> dict[str, float]:
  """XLA and PyTorch GFLOP/s of an `n × n` float32 matmul: `{"xla", "torch"}`."""
  import torch

  torch.set_num_threads(1)
  a = np.random.default_rng(0).random((n, n), np.float32)
  product = jax.jit(lambda a: a @ a)
  aj, at = jnp.asarray(a), torch.tensor(a)
  flops = 2 * n**3
  return {
    "xla": flops / _median_seconds(lambda: product(aj).block_until_ready(), iters) / 1e9,
    "torch": flops / _median_seconds(lambda: at @ at, iters) / 1e9,
  }


def main(argv):
  del argv
  f = flags.FLAGS
  print("GFLOP/s, one thread: XLA vs PyTorch")
  for shape in f.convs:
    r = conv_gflops(shape, f.iters)
    print(
      f"conv {shape}: forward {r['xla_forward']:.0f} vs {r['torch_forward']:.0f}, "
      f"forward + backward {r['xla_train']:.0f} vs {r['torch_train']:.0f}"
    )
  r = matmul_gflops(f.matmul, f.iters)
  print(f"matmul {f.matmul}²: {r['xla']:.0f} vs {r['torch']:.0f}")


if __name__ == "__main__":
  flags.DEFINE_list("convs", list(DEFAULT_CONVS), "Convolutions, BxHxCinxCout / BxDxHxCinxCout.")
  flags.DEFINE_integer("matmul", 2048, "Matmul size n (n × n · n × n).")
  flags.DEFINE_integer("iters", 5, "Timed calls per measurement.")
  app.run(main)
