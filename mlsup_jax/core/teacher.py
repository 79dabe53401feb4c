"""The generic mean teacher: an EMA of the student's parameters, and the ramp-up schedule.

Pure functions; the teacher's parameters live in `TrainState.extra` and are updated inside the
jitted train step. Constants as in UA-MT (Yu et al. 2019; `yulequan/UA-MT`,
`code/utils/ramps.py`), which most teacher-student segmentation code follows:

* EMA decay with a warm start: `γ_t = min(1 − 1/(t+1), γ)`, `t` = optimizer steps taken before
  this one (0-based), so the first update copies the student and the first ones are true averages;
* `sigmoid_rampup(t, L) = exp(−5 (1 − clip(t, 0, L)/L)²)`, 1 when `L = 0`.

The uncertainty of a teacher from stochastic passes lives in `mlsup_jax/ood/uncertainty.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ema_decay(step: jax.Array, decay: float) -> jax.Array:
  """`γ_t = min(1 − 1/(t+1), decay)` for `step = t` (scalar int) → scalar float32."""
  t = jnp.asarray(step, jnp.float32)
  return jnp.minimum(1.0 - 1.0 / (t + 1.0), jnp.float32(decay))


def ema_update(teacher, student, gamma: jax.Array):
  """`θ̃ ← γ θ̃ + (1 − γ) θ` leaf by leaf (pytrees of the same structure); keeps leaf dtypes."""
  return jax.tree.map(
    lambda t, s: (gamma * t + (1.0 - gamma) * s).astype(t.dtype), teacher, student
  )


def sigmoid_rampup(step: jax.Array, length: int) -> jax.Array:
  """UA-MT's ramp `exp(−5 (1 − clip(t, 0, L)/L)²)` in (0, 1]; exactly 1 for `length = 0`."""
  if length <= 0:
    return jnp.ones((), jnp.float32)
  phase = 1.0 - jnp.clip(jnp.asarray(step, jnp.float32), 0.0, float(length)) / float(length)
  return jnp.exp(-5.0 * phase * phase)
