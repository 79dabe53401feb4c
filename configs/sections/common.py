"""Config sections and the `arg` parser shared by every method config."""

from __future__ import annotations

import ml_collections


def parse_arg(arg: str | None, flags: set[str], values: dict[str, str]) -> tuple[set[str], dict]:
  """Parses `"smoke,dataset=phantom_bac"` into flags and `key=value` options.

  Args:
    arg: the text after `:` in `--config=configs/x.py:ARG`, or None.
    flags: accepted bare words (e.g. {"smoke"}).
    values: accepted `key=value` keys and their defaults.

  Raises:
    ValueError: on an unknown word or key, naming the accepted ones.
  """
  chosen_flags, chosen = set(), dict(values)
  for item in filter(None, (part.strip() for part in (arg or "").split(","))):
    key, sep, value = item.partition("=")
    if sep and key in values:
      chosen[key] = value
    elif not sep and item in flags:
      chosen_flags.add(item)
    else:
      raise ValueError(
        f"Unknown config option {item!r}. Flags: {sorted(flags)}; key=value options: "
        f"{sorted(values)}."
      )
  return chosen_flags, chosen


def optimizer(name="adamw", learning_rate=1e-3, weight_decay=0.0) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    {
      "name": name,
      "learning_rate": learning_rate,
      "schedule": "constant",
      "warmup_steps": 0,
      "b1": 0.9,
      "b2": 0.999,
      "eps": 1e-8,
      "weight_decay": weight_decay,
      "momentum": 0.9,
      "nesterov": False,
      "grad_clip_norm": 0.0,
    }
  )


def train(num_steps: int, log_every: int, checkpoint_every: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    {
      "num_steps": num_steps,
      "log_every": log_every,
      "checkpoint_every": checkpoint_every,
      "keep_checkpoints": 2,
      # Train steps per jitted call (a `lax.scan`; 1 = one dispatch per step). Raise it when
      # small steps are launch-bound: the results are the same as single steps.
      "steps_per_dispatch": 1,
      # Steps per loop iteration of such a dispatch (0 = unrolled: fastest on CPU, compile time
      # grows with steps_per_dispatch; set e.g. 1 for a rolled loop that compiles once).
      "dispatch_unroll": 0,
      # Dispatches whose batches a background thread reads (host arrays) ahead of
      # the loop (0 = read each one when needed, in the loop's thread).
      "prefetch": 2,
      "tensorboard": True,
    }
  )


def mesh() -> ml_collections.ConfigDict:
  # data=-1: every device not used by fsdp holds a slice of the batch.
  return ml_collections.ConfigDict({"data": -1, "fsdp": 1})


def stream(
  source: dict,
  batch_size: int,
  transforms: tuple[str, ...],
  *,
  require_label: bool = True,
  views: dict | None = None,
) -> dict:
  """One `config.data.streams.<name>` section (see `mlsup_jax/data/pipeline.py`).

  Args:
    source: the stream's source section (`name` + that source's fields).
    batch_size: its global batch size.
    transforms: registered transforms applied to every example (image and label).
    require_label: whether an example without `label` is an error.
    views: view name → photometric transforms; each adds `image_<view>`.
  """
  return {
    "source": source,
    "batch_size": batch_size,
    "transforms": tuple(transforms),
    "views": dict(views or {}),
    "require_label": require_label,
  }


def finalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Locks `config`, leaving its source sections open so a source can be swapped on the command
  line (`mlsup_jax/core/config_resolution.py`)."""
  from mlsup_jax.core.config_resolution import open_for_overrides

  return open_for_overrides(config)
