"""The mean-teacher machinery of UA-MT (Yu et al. 2019), shared by teacher-student methods.

Pure functions; the teacher's parameters live in `TrainState.extra` and are updated inside the
jitted train step (DESIGN §2). Constants from `yulequan/UA-MT`
(`code/train_LA_meanteacher_certainty_unlabel.py`, `code/utils/ramps.py`; specs
`reference_code_constants.md` §3):

* EMA decay with a warm start: `γ_t = min(1 − 1/(t+1), γ)`, `t` = optimizer steps taken before
  this one (0-based), so the first update copies the student and the first ones are true averages;
* `sigmoid_rampup(t, L) = exp(−5 (1 − clip(t, 0, L)/L)²)`, 1 when `L = 0`;
* T stochastic teacher passes on inputs with noise `clip(N(0, 0.1²), −0.2, 0.2)`; the pixel
  uncertainty is the entropy (natural log) of the mean prediction.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from mlsup_jax.ood.scores import predictive_entropy


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


def input_noise(rng: jax.Array, shape, dtype, std: float, clip: float) -> jax.Array:
  """`clip(N(0, std²), −clip, clip)` of `shape` (UA-MT's teacher-input perturbation)."""
  return jnp.clip(std * jax.random.normal(rng, shape, dtype), -clip, clip)


def perturbed_predictions(
  predict: Callable[[jax.Array, jax.Array], jax.Array],
  images: jax.Array,
  rng: jax.Array,
  *,
  num_passes: int,
  noise_std: float,
  noise_clip: float,
  passes_per_call: int | None = None,
) -> jax.Array:
  """T teacher passes on independently perturbed copies of `images`.

  Args:
    predict: `(images [B, *S, C], rng) -> probs [B, *S, K]`; `rng` drives any other stochastic
      layer (dropout).
    images: `[B, *S, C]`.
    rng: pass k uses `fold_in(rng, k)` for its noise and its `predict` rng.
    num_passes: T.
    noise_std, noise_clip: the input noise (`input_noise`).
    passes_per_call: passes evaluated together (`lax.map`'s `batch_size`; memory ∝ it).
      None: all T at once.

  Returns:
    `[T, B, *S, K]` probabilities.
  """

  def one_pass(k):
    key = jax.random.fold_in(rng, k)
    noise_key, predict_key = jax.random.split(key)
    noise = input_noise(noise_key, images.shape, images.dtype, noise_std, noise_clip)
    return predict(images + noise, predict_key)

  chunk = num_passes if passes_per_call is None else max(1, min(passes_per_call, num_passes))
  return jax.lax.map(one_pass, jnp.arange(num_passes), batch_size=chunk)


def mean_and_entropy(probs: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`probs: [T, ..., K]` → the mean prediction `p̄ [..., K]` and `u = −Σ_k p̄_k ln p̄_k [...]`.

  `0 ln 0 = 0` (UA-MT adds 1e-6 inside the log instead; that lowers u by about K·1e-6 nats).
  """
  return jnp.mean(probs, axis=0), predictive_entropy(probs)
