"""Several train steps per dispatch (`config.train.steps_per_dispatch`, a `lax.scan`): the same
batches, keys, checkpoints and logged steps as single steps, the same results to float32
round-off, and bit for bit reproducible across a kill and resume.

Not bit for bit equal to single steps: XLA compiles a loop of steps with other fusions and
layouts than one step, which moves the last bit of some gradients (measured on SCU-Net smoke with
SGD: 1.5e-8 after 3 steps). Adam turns a last-bit change of a gradient that is ≈ 0 into a
different sign of its first update (±lr), so the comparisons with single steps use SGD."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import scunet as scunet_config
from configs import semi_supervised as ssl_config
from mlsup_jax.core import trainer


def _state_at(workdir, step):
  with ocp.StandardCheckpointer() as checkpointer:
    return checkpointer.restore(workdir / "checkpoints" / str(step) / "state")


def _train_rows(workdir):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [r for r in map(json.loads, lines) if any(k.startswith("train/") for k in r)]


def _with_dispatch(config, k, optimizer="sgd", unroll=0):
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.train.steps_per_dispatch = k
    config.train.dispatch_unroll = unroll
    config.optimizer.name = optimizer
    config.train.keep_checkpoints = 3  # every checkpoint of the runs below: the first is compared
  return config


def _close(a, b):
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _close_to_leaf_scale(a, b):
  """`_close`, with the absolute tolerance raised to 1e-3 of the leaf's largest magnitude where
  that is larger: for the optimizer's momentum (below)."""
  b = np.asarray(b)
  atol = max(1e-6, 1e-3 * float(np.abs(b).max(initial=0.0)))
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol)


def _assert_same_runs(a, b, steps):
  """Everything at the first checkpoint; parameters and carried state at every one. The
  optimizer's momentum holds raw gradients, whose round-off grows fastest (2e-7 → 4e-5 from step
  3 to 6 of the two-stream run, through its instance norms; up to 1e-5 at step 16 of the SCU-Net
  run on an Intel AVX-512 CPU, so the SCU-Net runs compare it at step 8). On an AMD AVX-512 CPU
  the SCU-Net momentum at step 8 differs by up to 1.7e-6 = 7e-5 of its leaf's largest value, in
  4 of 5 472 elements (already so at commit 1a57bfd; within `_close` on the two other CPUs), so
  the momentum is compared relative to its leaf's scale: 1e-3 of it, far below what a wrong
  batch, key or step order changes (every element, by O(1) of the scale)."""
  state_a, state_b = _state_at(a, steps[0]), _state_at(b, steps[0])
  jax.tree.map(_close_to_leaf_scale, state_a.pop("opt_state"), state_b.pop("opt_state"))
  jax.tree.map(_close, state_a, state_b)
  for step in steps:
    state_a, state_b = _state_at(a, step), _state_at(b, step)
    jax.tree.map(
      _close, (state_a["params"], state_a["extra"]), (state_b["params"], state_b["extra"])
    )
  rows_a, rows_b = _train_rows(a), _train_rows(b)
  assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
  for row_a, row_b in zip(rows_a, rows_b, strict=True):
    assert row_a.keys() == row_b.keys()
    _close([row_a[k] for k in sorted(row_a)], [row_b[k] for k in sorted(row_a)])


@pytest.mark.slow
@pytest.mark.parametrize("unroll", [0, 2])  # straight-line steps; a loop of two steps per turn
def test_scan_of_steps_equals_single_steps_and_resumes(tmp_path, unroll):
  """SCU-Net smoke: 24 steps, a checkpoint every 8, a log every 4; k = 5 dispatches 5 + 3 steps
  between checkpoints (two scan lengths), on one device."""
  config = scunet_config.get_config("smoke")
  devices = jax.devices()[:1]
  single, scanned, resumed = tmp_path / "single", tmp_path / "scanned", tmp_path / "resumed"
  trainer.train_and_evaluate(_with_dispatch(config, 1), str(single), devices)
  trainer.train_and_evaluate(_with_dispatch(config, 5, unroll=unroll), str(scanned), devices)
  _assert_same_runs(single, scanned, (8, 16, 24))
  assert [r["step"] for r in _train_rows(scanned)] == list(range(4, 25, 4))

  # Resumed from its step-16 checkpoint, the k = 5 run ends bit for bit where it ended.
  (resumed / "checkpoints").mkdir(parents=True)
  shutil.copytree(scanned / "checkpoints" / "16", resumed / "checkpoints" / "16")
  trainer.train_and_evaluate(_with_dispatch(config, 5, unroll=unroll), str(resumed), devices)
  jax.tree.map(np.testing.assert_array_equal, _state_at(scanned, 24), _state_at(resumed, 24))


@pytest.mark.slow
def test_scan_of_steps_with_two_streams_and_a_teacher_on_four_devices(tmp_path):
  """Mean Teacher (labelled + unlabelled streams, EMA teacher carried in `extra`), sharded over
  4 devices: 6 steps, checkpoints every 3, k = 4 → two dispatches of 3."""
  config = ssl_config.get_config("smoke,kind=mean_teacher")
  devices = jax.devices()[:4]
  single, scanned = tmp_path / "single", tmp_path / "scanned"
  trainer.train_and_evaluate(_with_dispatch(config, 1), str(single), devices)
  trainer.train_and_evaluate(_with_dispatch(config, 4), str(scanned), devices)
  _assert_same_runs(single, scanned, (3, 6))
  assert "teacher" in _state_at(scanned, 6)["extra"]


def test_steps_per_dispatch_below_one_is_a_clear_error(tmp_path):
  config = _with_dispatch(ssl_config.get_config("smoke,kind=labelled_only"), 0)
  with pytest.raises(ValueError, match="steps_per_dispatch"):
    trainer.train_and_evaluate(config, str(tmp_path), jax.devices()[:1])
