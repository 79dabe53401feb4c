"""Uncertainty from T stochastic passes of a network (UA-MT's teacher; Yu et al. 2019).

Constants from `yulequan/UA-MT` (`code/train_LA_meanteacher_certainty_unlabel.py`; specs
`reference_code_constants.md` §3): T passes on inputs with noise `clip(N(0, 0.1²), −0.2, 0.2)`;
the pixel uncertainty is the entropy (natural log) of the mean prediction.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from mlsup_jax.ood.scores import predictive_entropy


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
