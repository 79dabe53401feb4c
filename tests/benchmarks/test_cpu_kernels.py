"""The XLA-vs-PyTorch kernel benchmark at tiny size: the same convolution in both layouts (it
checks that itself), finite GFLOP/s. Skipped without PyTorch (an optional benchmark dependency)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import cpu_kernels

pytest.importorskip("torch", reason="PyTorch is an optional benchmark dependency")


def test_conv_and_matmul_rates_are_measured_on_the_same_work():
  rates = []
  for shape in ("2x4x8x3x5", "2x8x3x5"):  # 3-D and 2-D
    conv = cpu_kernels.conv_gflops(shape, iters=1)
    assert set(conv) == {"xla_forward", "torch_forward", "xla_train", "torch_train"}
    rates += conv.values()
  rates += cpu_kernels.matmul_gflops(64, iters=1).values()
  assert all(np.isfinite(rate) and rate > 0 for rate in rates)
  with pytest.raises(ValueError, match="expected BxHxCinxCout"):
    cpu_kernels.conv_gflops("2x8x3", iters=1)
