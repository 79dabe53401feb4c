"""`train_and_evaluate(config, workdir)`: the one training loop, for every method.

The loop knows nothing about any method: it asks the registry for the method, builds the mesh
and the input pipeline, creates or restores the state, runs each `Stage` with its jitted,
sharded, state-donating step, logs without blocking the device, checkpoints, and evaluates.
Re-running the same command with the same workdir resumes from the newest checkpoint and
reproduces the uninterrupted run bit for bit (RNG = fold_in(seed, step); data iterator state is
checkpointed).
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from absl import logging

from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core.batch_prefetch import BatchPrefetcher, dispatch_lengths
from mlsup_jax.core.checkpoint import Checkpointer
from mlsup_jax.core.evaluation import evaluate
from mlsup_jax.core.loop_clock import LoopClock
from mlsup_jax.core.method import Stage
from mlsup_jax.core.run_setup import RunSetup, enter_stage
from mlsup_jax.core.writers import MetricWriters
from mlsup_jax.data import pipeline


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, devices=None
) -> dict[str, float]:
  """Trains every stage of `config.method`, checkpointing and resuming, then evaluates.

  Args:
    config: a method config (see `configs/`).
    workdir: where config, metrics, TensorBoard events, checkpoints and reports go.
    devices: the devices of the mesh (default: all).

  Returns:
    The evaluation metrics (also written to `<workdir>/eval_results.json`).
  """
  run = RunSetup(config, devices)
  config = run.config  # Resolved: sources and defaults filled in, validated.
  checkpointer = Checkpointer(workdir, config, max_to_keep=config.train.keep_checkpoints)
  writers = MetricWriters(workdir, run.total_steps, tensorboard=config.train.tensorboard)
  data_iter = pipeline.train_iterator(run.train_dataset, config.data)
  clock = LoopClock(config.data.batch_size)

  step, stage_index = 0, 0
  latest = checkpointer.latest_step()
  if latest is not None:
    state, data_state, stage_index = run.restore(checkpointer, latest)
    data_iter.set_state(data_state)
    step = latest
    logging.info("Resumed from step %d (stage %s).", step, run.stages[stage_index].name)
  else:
    state = run.create_state(0)

  try:
    for index in range(stage_index, len(run.stages)):
      stage = run.stages[index]
      _, shardings = run.state_shardings(index)
      if index != stage_index:
        state = jax.jit(enter_stage, static_argnums=1, out_shardings=shardings)(state, stage)
        stage_index = index
      end = run.starts[index] + stage.num_steps
      train_step = run.compile_step(stage, shardings)
      state, step = _run_stage(
        run,
        stage,
        index,
        (train_step, shardings),
        state,
        step,
        end,
        data_iter,
        checkpointer,
        writers,
        clock,
      )
    checkpointer.wait()
    if jax.process_index() == 0 and step > 0:
      _log_throughput(clock, config.train.steps_per_dispatch, workdir)
    results = evaluate(run.method, state, config, run.mesh, run.eval_rng, workdir)
    writers.write(step, {f"eval/{k}": v for k, v in results.items()}, stage="eval", progress=False)
  finally:
    checkpointer.close()
    writers.close()
  return results


def _run_stage(
  run, stage, index, compiled, state, step, end, data_iter, checkpointer, writers, clock
):
  """Runs `stage` from `step` to `end`; returns `(state, step)`.

  With `config.train.steps_per_dispatch = k > 1`, up to `k` steps run in one jitted call
  (`RunSetup.compile_steps`); a dispatch never crosses a checkpoint or the stage's end, so the
  checkpoints, the data order and every step's key are those of single steps. A stage with
  `variants` runs, step by step, the variant `variant_of(step)` names (multi-step dispatches
  use its one-program `train_step`). The batches come from a `BatchPrefetcher`,
  `config.train.prefetch` dispatches ahead, each with the data-iterator state after it (what a
  checkpoint stores). Every step's key is `fold_in(train_rng, step)`.

  `clock` (`LoopClock`) times the loop by phase; a dispatch whose step function has not run yet
  (it compiles) and the run's first checkpoint are one-time costs, timed apart.
  """
  config = run.config.train
  lengths = dispatch_lengths(step, end, config.checkpoint_every, int(config.steps_per_dispatch))
  train_step, shardings = compiled
  multi_steps = {}  # length → compiled scan of that many steps
  variants = {}  # variant name → its compiled step (stages with `variants`)
  to_log = []  # (step, metrics, position) read only after the next dispatch
  called = set()  # ids of the step functions already run (the others compile on this call)
  clock.begin_stage(stage.name)
  # The thread reads host batches; the device transfers are issued here, in the loop's thread
  # (asynchronous on accelerators): on XLA's CPU backend, transfers issued from a second thread
  # while a sharded step runs can starve the step's all-reduce of device threads (measured: a
  # 40 s rendezvous timeout, then abort, on 8 CPU devices).
  prefetcher = BatchPrefetcher(
    data_iter,
    lengths,
    mesh_lib.stack_local_batches,
    data_iter.get_state,
    depth=int(config.prefetch),
  )
  with prefetcher:
    for length in lengths:
      with clock.phase("data"):
        host_batch, data_state = next(prefetcher)
        if length == 1:
          batch = mesh_lib.global_batch(host_batch, run.mesh)
        else:
          batch = mesh_lib.global_stacked_batch(host_batch, run.mesh)
      if length == 1:
        step_fn = train_step
        if stage.variants:
          name = stage.variant_of(step)
          if name not in variants:
            variants[name] = run.compile_step(stage, shardings, stage.variants[name])
          step_fn = variants[name]
        args = (batch, jax.random.fold_in(run.train_rng, step))
      else:
        if length not in multi_steps:
          unroll = int(config.dispatch_unroll)
          multi_steps[length] = run.compile_steps(stage, shardings, length, unroll)
        step_fn = multi_steps[length]
        args = (batch, run.train_rng, np.int32(step))
      if id(step_fn) in called:
        with clock.phase("dispatch"):
          state, metrics = step_fn(state, *args)
      else:
        called.add(id(step_fn))
        with clock.phase("wait"):
          jax.block_until_ready(state)
        with clock.one_time("compile", steps=length):
          state, metrics = step_fn(state, *args)
          jax.block_until_ready(state)
      clock.count_steps(length)
      first, step = step, step + length
      with clock.phase("log"):
        _log_all(to_log, writers, checkpointer, stage)
      for done in range(first + 1, step + 1):
        if done % config.log_every == 0 or done == end:
          to_log.append((done, metrics, None if length == 1 else done - first - 1))
      if step % config.checkpoint_every == 0 or step == end:
        with clock.phase("log"):
          _log_all(to_log, writers, checkpointer, stage)
        first_save = checkpointer.saves == 0
        with clock.one_time("first_checkpoint") if first_save else clock.phase("checkpoint"):
          checkpointer.save(step, state, data_state, index)
  with clock.phase("log"):
    _log_all(to_log, writers, checkpointer, stage)
  with clock.phase("wait"):
    jax.block_until_ready(state)
    checkpointer.wait()
  clock.end_stage()
  return state, step


def _log_throughput(clock: LoopClock, steps_per_dispatch: int, workdir: str) -> None:
  """Logs each stage's steady-state speed and writes `<workdir>/throughput.json`."""
  clock.write(workdir)
  for name, row in clock.report().items():
    if row["steps"] > 0:
      phases = ", ".join(f"{k} {v:.2f} s" for k, v in row["phases"].items())
      logging.info(
        "Stage %s: %d steps in %.2f s after compilation: %.3g steps/s, %.3g examples/s "
        "(steps_per_dispatch=%d; %s).",
        name,
        row["steps"],
        row["seconds"],
        row["steps_per_s"],
        row["examples_per_s"],
        steps_per_dispatch,
        phases,
      )


def _log_all(entries: list, writers, checkpointer, stage) -> None:
  """Logs and empties `entries` of `(step, metrics, position in a stacked dispatch or None)`."""
  for step, metrics, position in entries:
    if position is not None:
      metrics = {k: v[position] for k, v in jax.device_get(metrics).items()}
    _log((step, metrics), writers, checkpointer, stage)
  entries.clear()


def _log(entry, writers: MetricWriters, checkpointer: Checkpointer, stage: Stage) -> None:
  step, metrics = entry
  values = {f"train/{k}": float(v) for k, v in jax.device_get(metrics).items()}
  writers.write(step, values, stage=stage.name)
  bad = {k: v for k, v in values.items() if not np.isfinite(v)}
  if bad:
    raise FloatingPointError(
      f"Non-finite training metrics at step {step} (stage {stage.name!r}): {bad}. Training "
      f"stopped; the last good checkpoint is step {checkpointer.latest_step()} in "
      f"{checkpointer.directory}."
    )
