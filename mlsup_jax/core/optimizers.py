"""`config.optimizer` → an optax optimizer with its learning-rate schedule; masking by subtree."""

from __future__ import annotations

import jax
import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """`constant` or `cosine` decay, each after `warmup_steps` of linear warm-up."""
  lr, warmup = config.learning_rate, config.warmup_steps
  if config.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif config.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(num_steps - warmup, 1))
  else:
    raise ValueError(f"Unknown optimizer.schedule {config.schedule!r}: use 'constant' or 'cosine'.")
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def build_optimizer(
  config: ml_collections.ConfigDict, num_steps: int
) -> optax.GradientTransformation:
  """AdamW (decoupled decay), Adam (coupled L2, as PyTorch's `Adam(weight_decay=…)`) or SGD."""
  schedule = learning_rate_schedule(config, num_steps)
  if config.name == "adamw":
    optimizer = optax.adamw(
      schedule, b1=config.b1, b2=config.b2, eps=config.eps, weight_decay=config.weight_decay
    )
  elif config.name == "adam":
    optimizer = optax.chain(
      optax.add_decayed_weights(config.weight_decay),
      optax.adam(schedule, b1=config.b1, b2=config.b2, eps=config.eps),
    )
  elif config.name == "sgd":
    optimizer = optax.chain(
      optax.add_decayed_weights(config.weight_decay),
      optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov),
    )
  else:
    raise ValueError(f"Unknown optimizer.name {config.name!r}: use 'adamw', 'adam' or 'sgd'.")
  if config.grad_clip_norm:
    optimizer = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optimizer)
  return optimizer


def trainable_subtree(params: dict, trained: tuple[str, ...], frozen: tuple[str, ...] = ()):
  """Optimizer labels: "train" for leaves under the `trained` top-level keys, else "frozen".

  `frozen` names second-level keys inside a trained subtree that stay fixed (e.g. "encoder").
  """

  def label(path, _):
    keys = [getattr(entry, "key", None) for entry in path]
    if keys[0] not in trained or (len(keys) > 1 and keys[1] in frozen):
      return "frozen"
    return "train"

  return jax.tree_util.tree_map_with_path(label, params)


def masked_optimizer(optimizer, trained: tuple[str, ...], frozen: tuple[str, ...] = ()):
  """`optimizer` on the trained subtrees; the rest never moves (no weight decay either)."""
  return optax.multi_transform(
    {"train": optimizer, "frozen": optax.set_to_zero()},
    lambda params: trainable_subtree(params, trained, frozen),
  )
