"""TrainState: everything a pure train step reads and writes."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """The complete, checkpointable training state.

  Attributes:
    step: global step counter across all stages (scalar int32).
    params: trainable parameters.
    opt_state: optimizer state of the current stage's optimizer.
    model_state: non-trainable collections (`batch_stats`, …).
    extra: method-owned carried state (EMA teacher, memory bank, statistics, …).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  extra: Any

  @classmethod
  def create(cls, *, params, optimizer: optax.GradientTransformation, model_state=None, extra=None):
    return cls(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=optimizer.init(params),
      model_state={} if model_state is None else model_state,
      extra={} if extra is None else extra,
    )

  def apply_gradients(self, *, grads, optimizer: optax.GradientTransformation, **changes):
    """One optimizer update; `changes` replace other fields (e.g. `model_state=`)."""
    updates, opt_state = optimizer.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **changes)

  def apply_subtree_gradients(self, subtree: str, *, grads, optimizer, **changes):
    """`apply_gradients` for multi-network states: `grads` of `params[subtree]` only.

    The other top-level subtrees get zero gradients; pair with `optimizers.masked_optimizer` so
    that they do not move at all (no weight decay, no momentum).
    """
    full = {
      name: grads if name == subtree else jax.tree.map(jnp.zeros_like, value)
      for name, value in self.params.items()
    }
    return self.apply_gradients(grads=full, optimizer=optimizer, **changes)
