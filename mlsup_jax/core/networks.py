"""Initialising and applying a Flax network with its non-trainable state, the same way everywhere.

Every network is called as `model(x, *, train)`. Its non-trainable collections (`batch_stats`;
empty for networks without BatchNorm) live in `TrainState.model_state`; in training mode they are
updated and returned, in evaluation mode they are read only.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

MUTABLE = ("batch_stats",)


def init_network(
  model: nn.Module, rng: jax.Array, x: jax.Array, rng_names: Sequence[str] = ("params",), **kwargs
) -> tuple[dict, dict]:
  """`(params, model_state)` of `model` initialised on `x` (evaluation mode).

  Args:
    model: the network.
    rng: split among `rng_names` (one name: the key itself).
    x: an example input `[B, *S, C]`.
    rng_names: the Flax RNG streams `init` draws.
    **kwargs: further call arguments.
  """
  keys = [rng] if len(rng_names) == 1 else list(jax.random.split(rng, len(rng_names)))
  variables = model.init(dict(zip(rng_names, keys, strict=True)), x, train=False, **kwargs)
  return variables["params"], {name: variables.get(name, {}) for name in MUTABLE}


def apply_network(
  model: nn.Module,
  params,
  model_state: dict,
  x: jax.Array,
  *,
  train: bool,
  rngs: dict | None = None,
  **kwargs,
):
  """`(outputs, model_state)`: `model(x, train=train)`; in training mode the state is updated.

  Args:
    model: the network.
    params: its parameters.
    model_state: its non-trainable collections (`{"batch_stats": …}`).
    x: the input.
    train: training mode (dropout on, BatchNorm on batch statistics and updated).
    rngs: Flax RNG streams (e.g. `{"dropout": key}`).
    **kwargs: further call arguments.
  """
  variables = {"params": params, **model_state}
  if not train:
    return model.apply(variables, x, train=False, rngs=rngs, **kwargs), model_state
  outputs, updates = model.apply(
    variables, x, train=True, rngs=rngs, mutable=list(MUTABLE), **kwargs
  )
  return outputs, {**model_state, **updates}
