"""Tests of the benchmark harness, the pmap leg, the results writer and the PyTorch SCU-Net.

Timings are never asserted: only that every field is there with a sane type.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks import harness, report, torch_scunet
from configs import scunet as scunet_config
from mlsup_jax.core.state import TrainState

TIMING_FIELDS = ("compile_s", "step_ms_min", "step_ms_median", "examples_per_s")
MEMORY_FIELDS = ("argument_bytes", "output_bytes", "alias_bytes", "temp_bytes", "peak_bytes")


@pytest.fixture(scope="module")
def smoke_config():
  return scunet_config.get_config("smoke")


@pytest.fixture(scope="module")
def jit_report(smoke_config, devices):
  return harness.benchmark_config(smoke_config, warmup=1, iters=2, devices=devices)


@pytest.fixture(scope="module")
def pmap_report(smoke_config, devices):
  return harness.benchmark_pmap_leg(smoke_config, warmup=1, iters=2, devices=devices)


def _check_report(rep: dict, leg: str, n_devices: int) -> None:
  assert rep["leg"] == leg
  assert rep["device_kind"] == "cpu" and rep["platform"] == "cpu"
  assert rep["device_count"] == n_devices
  assert rep["batch_size"] == 8 and rep["dtype"] == "float32"
  assert rep["warmup"] == 1 and rep["iters"] == 2
  for field in TIMING_FIELDS:
    assert isinstance(rep[field], float) and rep[field] > 0, field
  assert rep["step_ms_min"] <= rep["step_ms_median"]
  assert rep["examples_per_s"] == pytest.approx(8e3 / rep["step_ms_median"])
  # XLA's CPU backend reports FLOPs; no peak is known for a CPU, so no MFU.
  assert isinstance(rep["flops_per_step"], float) and rep["flops_per_step"] > 0
  assert rep["tflops_per_s"] == pytest.approx(rep["flops_per_step"] / rep["step_ms_median"] * 1e-9)
  assert rep["peak_tflops_per_device"] is None and rep["mfu"] is None
  assert set(rep["memory"]) == set(MEMORY_FIELDS)
  assert all(isinstance(rep["memory"][k], int) and rep["memory"][k] >= 0 for k in MEMORY_FIELDS)
  assert rep["memory"]["peak_bytes"] > 0
  json.dumps(rep)  # Serialisable as it is.


def test_jit_report_has_every_field(jit_report):
  _check_report(jit_report, "jit", 8)
  assert isinstance(jit_report["compilation_cache"], bool)
  assert jit_report["input_shapes"]["image"] == [8, 32, 32, 3]


def test_pmap_leg_runs_on_eight_devices(pmap_report, jit_report):
  _check_report(pmap_report, "pmap", 8)
  # Same network and batch: the same order of FLOPs as the jit leg (collectives differ).
  assert pmap_report["flops_per_step"] == pytest.approx(jit_report["flops_per_step"], rel=0.2)


def _tiny_problem(n_devices: int):
  """A linear model trained by squared error through `TrainState.apply_gradients`."""
  optimizer = optax.sgd(0.1)

  def train_step(state, batch, rng):
    del rng
    loss_fn = lambda w: jnp.mean((batch["x"] @ w - batch["y"]) ** 2)
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads, optimizer=optimizer), {"loss": loss}

  rng = np.random.default_rng(0)
  batch = {
    "x": rng.normal(size=(4 * n_devices, 3)).astype(np.float32),
    "y": rng.normal(size=(4 * n_devices,)).astype(np.float32),
  }
  state = TrainState.create(params=jnp.zeros(3), optimizer=optimizer)
  return train_step, state, batch


def test_pmap_step_averages_gradients_like_the_global_step(devices):
  train_step, state, batch = _tiny_problem(len(devices))
  n = len(devices)
  stacked = jax.tree.map(lambda x: jnp.stack([x] * n), harness._as_pmean_state(state))
  split = jax.tree.map(lambda x: x.reshape((n, -1) + x.shape[1:]), batch)
  step = jax.pmap(harness.pmap_step(train_step), harness.PMAP_AXIS, in_axes=(0, 0, None))
  out, metrics = step(stacked, split, jax.random.key(0))
  expected, expected_metrics = jax.jit(train_step)(state, batch, jax.random.key(0))
  # Equal per-device batches: the mean of per-device mean losses is the global mean.
  np.testing.assert_allclose(out.params, np.stack([expected.params] * n), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["loss"], expected_metrics["loss"], rtol=1e-5)


def test_pmap_step_rejects_a_step_without_apply_gradients(devices):
  train_step, state, batch = _tiny_problem(len(devices))
  n = len(devices)
  bypass = lambda s, b, r: (s.replace(step=s.step + 1), {})
  stacked = jax.tree.map(lambda x: jnp.stack([x] * n), harness._as_pmean_state(state))
  split = jax.tree.map(lambda x: x.reshape((n, -1) + x.shape[1:]), batch)
  step = jax.pmap(harness.pmap_step(bypass), harness.PMAP_AXIS, in_axes=(0, 0, None))
  with pytest.raises(ValueError, match="apply_gradients"):
    step(stacked, split, jax.random.key(0))


def test_peak_table_and_analysis_helpers():
  assert harness.peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.4
  assert harness.peak_tflops("NVIDIA H100 PCIe", "bfloat16") == 756.0
  assert harness.peak_tflops("NVIDIA H200", "float32") == 494.7
  assert harness.peak_tflops("NVIDIA A100-SXM4-80GB", "bfloat16") == 312.0
  assert harness.peak_tflops("TPU v5 lite", "bfloat16") == 197.0
  assert harness.peak_tflops("TPU v5p", "bfloat16") == 459.0
  assert harness.peak_tflops("TPU v4", "float32") == 275.0
  assert harness.peak_tflops("cpu", "float32") is None

  class Fake:
    def __init__(self, cost, memory=None):
      self.cost, self.memory = cost, memory

    def cost_analysis(self):
      return self.cost

    def memory_analysis(self):
      return self.memory

  assert harness.xla_flops(Fake({"flops": 12.0})) == 12.0
  assert harness.xla_flops(Fake([{"flops": 7.0}])) == 7.0
  assert harness.xla_flops(Fake([])) is None
  assert harness.xla_flops(Fake({"flops": -1.0})) is None
  assert harness.xla_flops(Fake(None)) is None
  assert harness.memory_stats(Fake({})) == {f: None for f in MEMORY_FIELDS}


def test_writer_produces_json_and_markdown(tmp_path, jit_report, pmap_report):
  env = report.environment()
  skipped = {"leg": "torch", "skipped": "torch not installed"}
  legs = {"jit": jit_report, "pmap": pmap_report, "torch": skipped}
  path = report.write_results(str(tmp_path), "scunet.py:smoke", legs, env, "test", (1.0, 1, 1))
  assert os.path.basename(path) == "cpu_x8.json"
  report.write_results(str(tmp_path), "scunet.py", {"jit": jit_report}, env)
  with open(path) as f:
    document = json.load(f)
  assert document["device_kind"] == "cpu" and document["device_count"] == 8
  assert {"python", "jax", "jaxlib", "flax", "optax"} <= set(document["versions"])
  assert set(document["results"]) == {"scunet.py:smoke", "scunet.py"}
  assert document["results"]["scunet.py:smoke"]["legs"]["torch"] == skipped

  text = report.write_markdown(str(tmp_path))
  assert (tmp_path / "RESULTS.md").read_text() == text
  rows = [line for line in text.splitlines() if line.startswith("| scunet.py")]
  assert len(rows) == 4
  assert all(row.count("|") == len(report.COLUMNS) + 1 for row in rows)
  assert "skipped: torch not installed" in text

  # Results measured under other library versions are dropped, never mixed.
  other = {**env, "versions": {**env["versions"], "jax": "0.0.0"}}
  report.write_results(str(tmp_path), "scunet.py", {"jit": jit_report}, other)
  with open(path) as f:
    assert set(json.load(f)["results"]) == {"scunet.py"}


def test_torch_leg_skips_without_torch(monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError.
  assert torch_scunet.benchmark_torch_scunet(2, 32, 0, 1) == {
    "leg": "torch",
    "skipped": "torch not installed",
  }
