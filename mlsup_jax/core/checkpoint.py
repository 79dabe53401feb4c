"""Orbax checkpoints: train state + data-iterator state + resolved config + stage index.

A checkpoint is written only for a finite state, so after a NaN/Inf the newest checkpoint on
disk is always the last good one. Saving is asynchronous (orbax copies device arrays to host
before `save` returns, then writes in the background), so the step loop keeps running.

Orbax reports every save step by step at INFO level (about two thirds of a smoke run's log);
those lines are dropped unless `MLSUP_JAX_ORBAX_LOGS=1`. Its warnings and errors always show.
"""

from __future__ import annotations

import json
import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp


class _QuietOrbax(logging.Filter):
  """Drops orbax's records below WARNING (absl routes every library's logs to one logger)."""

  def filter(self, record: logging.LogRecord) -> bool:
    from_orbax = f"{os.sep}orbax{os.sep}" in record.pathname
    return not from_orbax or record.levelno >= logging.WARNING


_QUIET_ORBAX = _QuietOrbax()


def quiet_orbax_logs() -> None:
  """Hides orbax's INFO lines (idempotent); `MLSUP_JAX_ORBAX_LOGS=1` keeps them."""
  if os.environ.get("MLSUP_JAX_ORBAX_LOGS", "") == "1":
    return
  logger = logging.getLogger("absl")
  if _QUIET_ORBAX not in logger.filters:
    logger.addFilter(_QUIET_ORBAX)


@jax.jit
def tree_all_finite(tree) -> jax.Array:
  """True iff every floating leaf of `tree` is finite (one fused reduction on device)."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  if not leaves:
    return jnp.array(True)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


class Checkpointer:
  """Saves and restores `(state, data iterator state, stage index)` under `<workdir>/checkpoints`.

  Args:
    workdir: the run's directory.
    config: the resolved config; stored with every checkpoint and as `<workdir>/config.json`.
    max_to_keep: how many recent checkpoints to keep.
    write_config: write `<workdir>/config.json` (False when only reading, e.g. evaluating a
      finished run on another source, so the run's own config stays as trained).
  """

  def __init__(
    self,
    workdir: str,
    config: ml_collections.ConfigDict,
    max_to_keep: int = 3,
    write_config: bool = True,
  ):
    quiet_orbax_logs()
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._config_json = json.loads(config.to_json_best_effort())
    if write_config and jax.process_index() == 0:
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(self._config_json, f, indent=2, sort_keys=True)
    self.saves = 0  # `save` calls of this object (the first compiles the finiteness check)
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """The steps of every kept checkpoint, ascending."""
    return sorted(int(s) for s in self._manager.all_steps())

  def save(self, step: int, state, data_state: dict, stage_index: int) -> None:
    """Saves if `state` is finite; raises `FloatingPointError` (keeping older ones) otherwise."""
    if not bool(tree_all_finite(state)):
      last = self.latest_step()
      raise FloatingPointError(
        f"Training diverged: the state at step {step} contains NaN/Inf values. Nothing was "
        f"saved for it; the last good checkpoint is step {last} in {self.directory}."
      )
    self.saves += 1
    self._manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(dict(data_state)),
        meta=ocp.args.JsonSave({"stage_index": int(stage_index), "step": int(step)}),
        config=ocp.args.JsonSave(self._config_json),
      ),
    )

  def restore_meta(self, step: int) -> dict:
    restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored.meta)

  def restore(self, step: int, abstract_state) -> tuple[object, dict]:
    """Restores `(state, data_state)`; `abstract_state` carries shapes, dtypes and shardings."""
    restored = self._manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=ocp.args.JsonRestore(),
      ),
    )
    return restored.state, dict(restored.data)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
