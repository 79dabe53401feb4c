"""Class centres spread uniformly on the hypersphere, their matching to classes, and ACTION++'s
cosine temperature schedule.

ACTION++ pulls each class's pixel embeddings towards a fixed *target centre*; the centres are
placed as far apart as possible on the unit sphere by minimising
`mean_i log Σ_{j≠i} exp(x_i · x_j / 0.07)` over row-normalised `x ∈ R^{C×D}` (Adam, lr 1e-3,
10 000 steps, as the authors' `TSC.py`). Their code loads the result from `optimal_{C}_{D}.npy`,
which is not shipped; `uniform_centres` computes it here, deterministically, cached per `(C, D)`.
For `C ≤ D + 1` the optimum is a regular simplex: every pair at cosine `−1 / (C − 1)`.
Deviations, both measured: the authors' sum includes `j = i`, whose `exp(1 / 0.07)` swamps the
others so the gradient vanishes early (C = 2 stops at cosine −0.42 instead of −1; C = 4 spreads
over about −0.42 … −0.21 instead of −1/3), and we start from unit rows, not raw normal draws.

Which class gets which centre is decided every step by a Hungarian assignment between the
classes' running centroids and the centres (`match_centres`: exhaustive over the `C!`
permutations, inside the jitted step, for up to 8 classes).
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlsup_jax.losses.embeddings import l2_normalise

MAX_MATCHED_CLASSES = 8


def _spread_loss(x: jax.Array, temperature: float) -> jax.Array:
  x = l2_normalise(x)
  others = ~jnp.eye(x.shape[0], dtype=bool)  # without the self term (module docstring)
  return jnp.mean(jax.nn.logsumexp(jnp.where(others, x @ x.T / temperature, -jnp.inf), axis=-1))


@functools.lru_cache(maxsize=32)
def _centres(num_classes: int, dim: int, steps: int, temperature: float, seed: int) -> np.ndarray:
  optimizer = optax.adam(1e-3)
  x = jax.random.normal(jax.random.key(seed), (num_classes, dim))
  x = l2_normalise(x)  # unit rows: lr 1e-3 moves them enough

  def step(carry, _):
    x, opt_state = carry
    grads = jax.grad(_spread_loss)(x, temperature)
    updates, opt_state = optimizer.update(grads, opt_state)
    return (optax.apply_updates(x, updates), opt_state), None

  (x, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))((x, optimizer.init(x)))
  x = np.asarray(x, np.float64)
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def uniform_centres(
  num_classes: int, dim: int, steps: int = 10_000, temperature: float = 0.07, seed: int = 0
) -> np.ndarray:
  """`[C, D]` unit vectors spread uniformly on the sphere (module docstring); cached.

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.losses.class_centres import uniform_centres
    >>> c = uniform_centres(4, 16)
    >>> cos = c @ c.T
    >>> off_diagonal = cos[~np.eye(4, dtype=bool)]  # a regular simplex: all at −1/3
    >>> round(float(off_diagonal.min()), 2), round(float(off_diagonal.max()), 2)
    (-0.33, -0.33)
  """
  return _centres(int(num_classes), int(dim), int(steps), float(temperature), int(seed)).copy()


def match_centres(centroids: jax.Array, centres: jax.Array) -> jax.Array:
  """The assignment class → centre maximising the summed cosine (Hungarian, exhaustive).

  Args:
    centroids: `[C, D]` running class centroids (normalised).
    centres: `[C, D]` target centres.

  Returns:
    `[C]` int32: class `c`'s centre index.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.class_centres import match_centres
    >>> centres = jnp.eye(3)
    >>> match_centres(centres[jnp.array([2, 0, 1])], centres).tolist()
    [2, 0, 1]
  """
  num_classes = centroids.shape[0]
  if num_classes > MAX_MATCHED_CLASSES:
    raise ValueError(
      f"match_centres enumerates the {num_classes}! assignments; use at most "
      f"{MAX_MATCHED_CLASSES} classes (got {num_classes})."
    )
  perms = jnp.asarray(list(itertools.permutations(range(num_classes))), jnp.int32)  # [C!, C]
  similarity = centroids @ centres.T  # [C, C]
  scores = jnp.sum(similarity[jnp.arange(num_classes), perms], axis=1)
  return perms[jnp.argmax(scores)]


def cosine_temperature(
  step: jax.Array, total_steps: int, low: float, high: float, period: float = 0.1
) -> jax.Array:
  """ACTION++'s schedule `τ(t) = (high − low)(1 + cos(2π t / (period · T))) / 2 + low`, per step.

  The authors' code counts epochs (`max_epoch = 30000 // len(loader) + 1`), so its number of
  cycles depends on the dataset size; here a cycle is `period` of the run's steps.

  Example:
    >>> from mlsup_jax.losses.class_centres import cosine_temperature
    >>> [round(float(cosine_temperature(t, 1000, 0.1, 1.0)), 3) for t in (0, 50, 100)]
    [1.0, 0.1, 1.0]
  """
  cycle = max(period * total_steps, 1.0)
  phase = 2.0 * math.pi * jnp.asarray(step, jnp.float32) / cycle
  return (high - low) * (1.0 + jnp.cos(phase)) / 2.0 + low
