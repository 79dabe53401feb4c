"""The device suite (`benchmarks/device_suite.py`) at smoke size on the CPU.

The default-tier test re-uses the SCU-Net smoke step of tests/benchmarks/test_harness.py (same
program: a compilation-cache hit) and checks the orchestration: every leg recorded with its
status and reason, the sweep, skipped torch legs without PyTorch, a failing leg, the budget,
JSON + markdown. The study-tier test runs every leg of the mask transformer for real.
"""

from __future__ import annotations

import json
import os

import pytest

from benchmarks import device_suite as ds

SCUNET = ds.Entry("scunet", "scunet")


def _legs(document, config=None):
  return {
    (r["config"], r["leg"], r.get("batch")): r
    for r in document["legs"]
    if not config or r["config"] == config
  }


def test_suite_records_every_leg_and_writes_json_and_markdown(tmp_path, devices, monkeypatch):
  monkeypatch.setattr(ds, "torch_installed", lambda: False)  # As in CI, where torch is absent.
  broken = ds.Entry("broken", "scunet", overrides=(("model.no_such_section.x", 1),))
  suite = ds.Suite(size="smoke", out=str(tmp_path), warmup=1, iters=2, devices=devices)
  document = ds.run_suite(
    suite,
    [SCUNET, broken],
    legs=("jit", "sweep", "torch", "torch_compile"),
    batch_sizes=(8,),  # The smoke config's own batch: the jit leg is that point, not re-run.
    sweep_entry="scunet",
  )
  legs = _legs(document)
  jit = legs[("scunet", "jit", None)]
  assert jit["status"] == "ok" and jit["seconds"] > 0
  assert jit["report"]["batch_size"] == 8 and jit["report"]["step_ms_median"] > 0
  # On a CPU mesh the FLOPs are the compiled CPU program's.
  assert jit["report"]["flops_source"] == "xla_cpu_compiled"
  assert ("scunet", "sweep", 8) not in legs
  for leg in ("torch", "torch_compile"):
    assert legs[("scunet", leg, None)]["status"] == "skipped"
    assert legs[("scunet", leg, None)]["reason"] == "torch not installed"
  failed = legs[("broken", "jit", None)]
  assert failed["status"] == "failed" and "no_such_section" in failed["reason"]
  assert legs[("broken", "torch", None)]["reason"] == "no jit leg to take the batch shape from"

  path = os.path.join(tmp_path, "device_suite_cpu_smoke.json")
  with open(path) as f:
    written = json.load(f)
  assert written["size"] == "smoke" and written["device_count"] == len(devices)
  assert [r["leg"] for r in written["legs"]] == [r["leg"] for r in document["legs"]]
  with open(os.path.join(tmp_path, "device_suite_cpu_smoke.md")) as f:
    markdown = f.read()
  assert "| scunet | jit | 8 | float32 |" in markdown
  assert "(xla_cpu_compiled)" in markdown and "skipped: torch not installed" in markdown


def test_spent_budget_skips_legs_with_the_reason(tmp_path):
  suite = ds.Suite(size="smoke", out=str(tmp_path), budget_s=0.0)
  document = ds.run_suite(
    suite,
    [SCUNET],
    legs=("jit", "bf16", "sweep", "loop"),
    batch_sizes=(16,),
    loop_entries=("scunet",),
    sweep_entry="scunet",
  )
  assert [(r["leg"], r["status"]) for r in document["legs"]] == [
    ("jit", "skipped"),
    ("bf16", "skipped"),
    ("sweep", "skipped"),
    ("loop", "skipped"),
  ]
  assert all("budget of 0 s spent" in r["reason"] for r in document["legs"])
  with pytest.raises(ValueError, match="Unknown legs"):
    ds.run_suite(suite, [SCUNET], legs=("fp8",))


def test_time_limit_interrupts_a_python_leg():
  with pytest.raises(ds.LegTimeout), ds.time_limit(0.05):
    while True:
      pass


@pytest.mark.study
def test_mask_transformer_suite_at_smoke_size(tmp_path):
  """Every leg of the mask transformer for real (minutes on a CPU; torch legs need PyTorch)."""
  import jax

  suite = ds.Suite(
    size="smoke", out=str(tmp_path), warmup=2, iters=2, loop_steps=2, devices=jax.devices()[:1]
  )
  document = ds.run_suite(suite, [ds.SUITE[0]], batch_sizes=(4, 8), loop_entries=("maxquery",))
  legs = _legs(document)
  for key in [
    ("maxquery", "jit", None),
    ("maxquery", "bf16", None),
    ("maxquery", "sweep", 8),
    ("maxquery", "loop", None),
  ]:
    assert legs[key]["status"] == "ok", legs[key]
  assert legs[("maxquery", "bf16", None)]["report"]["dtype"] == "bfloat16"
  assert legs[("maxquery", "sweep", 8)]["report"]["batch_size"] == 8
  assert legs[("maxquery", "loop", None)]["report"]["loop_ms_per_step"] > 0
  pytest.importorskip("torch")
  for leg in ("torch", "torch_compile"):
    assert legs[("maxquery", leg, None)]["status"] == "ok", legs[("maxquery", leg, None)]
