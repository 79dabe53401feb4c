"""Input prefetch (`core/batch_prefetch.py`) and the loop's own clock (`core/loop_clock.py`):
the planned dispatches, the iterator state recorded with each batch, errors raised where they
happened, a thread that stops with the loop; a run with prefetch equals one without, and writes
its steady-state speed to throughput.json."""

from __future__ import annotations

import json
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import scunet as scunet_config
from mlsup_jax.core import trainer
from mlsup_jax.core.batch_prefetch import BatchPrefetcher, dispatch_lengths
from mlsup_jax.core.loop_clock import PHASES


class _Counting:
  """An iterator of `{"x": [i]}` with grain's `get_state` (the next index)."""

  def __init__(self, fail_at=None):
    self.position, self.fail_at = 0, fail_at

  def __next__(self):
    if self.position == self.fail_at:
      raise ValueError(f"bad example {self.position}")
    self.position += 1
    return {"x": np.array([self.position - 1])}

  def get_state(self):
    return {"next": self.position}


def _prefetcher(data, lengths, depth):
  return BatchPrefetcher(
    data, lengths, lambda bs: np.stack([b["x"] for b in bs]), data.get_state, depth
  )


def test_dispatch_lengths_never_cross_a_checkpoint_or_the_end():
  assert dispatch_lengths(0, 10, checkpoint_every=4, per_dispatch=3) == [3, 1, 3, 1, 2]
  assert dispatch_lengths(5, 9, checkpoint_every=100, per_dispatch=1) == [1, 1, 1, 1]
  assert dispatch_lengths(6, 6, checkpoint_every=3, per_dispatch=2) == []
  with pytest.raises(ValueError, match="steps_per_dispatch"):
    dispatch_lengths(0, 4, checkpoint_every=2, per_dispatch=0)


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_batches_and_states_are_those_of_reading_in_the_loop(depth):
  """Whatever the read-ahead, dispatch n gets the planned batches and the iterator state right
  after them (what a checkpoint after dispatch n must store); the iterator ends after the plan."""
  data = _Counting()
  lengths = [1, 3, 1, 2]
  with _prefetcher(data, lengths, depth) as prefetcher:
    items = list(prefetcher)
  read = [
    b["x"].tolist() if n == 1 else b[:, 0].tolist()
    for (b, _), n in zip(items, lengths, strict=False)
  ]
  assert read == [[0], [1, 2, 3], [4], [5, 6]]
  assert [state["next"] for _, state in items] == [1, 4, 5, 7]
  assert data.position == 7


def test_an_error_in_the_thread_is_raised_at_its_batch():
  data = _Counting(fail_at=2)
  with _prefetcher(data, [1, 1, 1, 1], depth=2) as prefetcher:
    next(prefetcher), next(prefetcher)
    with pytest.raises(ValueError, match="bad example 2"):
      next(prefetcher)


def test_closing_stops_a_thread_blocked_on_a_full_queue():
  prefetcher = _prefetcher(_Counting(), [1] * 50, depth=1)
  next(prefetcher)
  prefetcher.close()
  assert not any(t.name == "batch-prefetch" for t in threading.enumerate())
  with pytest.raises(ValueError, match="prefetch"):
    _prefetcher(_Counting(), [1], depth=-1)


def _state_at(workdir, step):
  with ocp.StandardCheckpointer() as checkpointer:
    return checkpointer.restore(workdir / "checkpoints" / str(step) / "state")


@pytest.mark.slow
def test_a_run_with_prefetch_equals_one_without_and_reports_its_speed(tmp_path):
  """SCU-Net smoke, 24 steps on one device: bit for bit the same checkpoints with prefetch 0 and
  3; throughput.json holds the steady-state steps (compilation and the first save left out)."""
  runs = {}
  for depth in (0, 3):
    config = scunet_config.get_config("smoke")
    with config.unlocked():
      config.train.prefetch = depth
      config.train.tensorboard = False
    runs[depth] = tmp_path / f"prefetch{depth}"
    trainer.train_and_evaluate(config, str(runs[depth]), jax.devices()[:1])
  for step in (16, 24):
    jax.tree.map(np.testing.assert_array_equal, _state_at(runs[0], step), _state_at(runs[3], step))
  report = json.loads((runs[3] / "throughput.json").read_text())["train"]
  assert report["excluded_steps"] == 1 and report["steps"] == 23
  assert all(report["one_time_seconds"][k] > 0 for k in ("compile", "first_checkpoint"))
  assert set(report["phases"]) == set(PHASES)
  assert report["seconds"] >= sum(report["phases"].values()) - 1e-6
  assert report["examples_per_s"] == pytest.approx(report["steps_per_s"] * config.data.batch_size)
