"""Prototype classifiers (LTUDA's labelled- and unlabelled-prototype heads, seed 002).

A head scores every pixel embedding against `M` prototypes per class: the embedding goes through
a LayerNorm over its `D` features and is L2-normalised; its cosine with each prototype
(`[K, M, D]`, unit vectors) is taken, the maximum over a class's prototypes is that class's
score, and a LayerNorm over the `K` class scores gives the logits (the authors' code: raw
cosines, no temperature, then `LayerNorm(K)`). Two heads with different prototype sets share the
module's parameters (the code's one `feat_norm` and one `mask_norm`).

Prototypes are not trained by gradient: `update_prototypes` moves them, without gradient, towards
the mean embedding of the pixels assigned to them — the pixels of class k that the head already
classifies correctly, split between the class's M prototypes by a balanced (Sinkhorn)
assignment so that no prototype is left empty (ProtoSeg's recipe, which LTUDA uses). The
assignment solves entropic OT between the class's pixels (uniform weights) and its prototypes
(uniform) on the cost `−cosine`, with ε 0.05 and 3 iterations (the code's constants) — ott-jax's
Sinkhorn, not a hand-written one. The code then draws a Gumbel-softmax sample from the plan; we
take each pixel's most likely prototype (the same as the code's `argmax` used for the targets).
The pixel–prototype targets (`k · M + assigned prototype`, −1 where ignored) feed the PPC / PPD
terms (`losses/prototypes.py`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from ott.geometry import geometry
from ott.solvers import linear

__all__ = [
  "PrototypeClassifier",
  "balanced_assignments",
  "init_prototypes",
  "normalise",
  "update_prototypes",
]


def normalise(x: jax.Array, axis: int = -1) -> jax.Array:
  """`x / ‖x‖` along `axis` (0 stays 0)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def init_prototypes(rng: jax.Array, num_classes: int, per_class: int, dim: int) -> jax.Array:
  """`[K, M, D]` random unit prototypes (the code: truncated normal, std 0.02, normalised).

  Example:
    >>> import jax
    >>> from mlsup_jax.nn.prototypes import init_prototypes
    >>> init_prototypes(jax.random.key(0), 5, 3, 8).shape
    (5, 3, 8)
  """
  draws = 0.02 * jax.random.truncated_normal(rng, -2.0, 2.0, (num_classes, per_class, dim))
  return normalise(draws)


class PrototypeClassifier(nn.Module):
  """Pixel embeddings → class logits by cosine to prototypes (module docstring).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from mlsup_jax.nn.prototypes import PrototypeClassifier, init_prototypes
    >>> head = PrototypeClassifier(num_classes=3)
    >>> protos = init_prototypes(jax.random.key(0), 3, 2, 8)
    >>> x = jnp.ones((1, 4, 4, 8))
    >>> params = head.init(jax.random.key(1), x, protos)
    >>> out = head.apply(params, x, protos)
    >>> out["logits"].shape, out["pixel_logits"].shape
    ((1, 4, 4, 3), (1, 4, 4, 6))

  Attributes:
    num_classes: K.
  """

  num_classes: int

  @nn.compact
  def __call__(self, embedding: jax.Array, prototypes: jax.Array) -> dict[str, jax.Array]:
    """`embedding: [B, *S, D]`, `prototypes: [K, M, D]` →

    `logits: [B, *S, K]`, `pixel_logits: [B, *S, K·M]` (the raw cosines, class-major),
    `features: [B, *S, D]` (the normalised embeddings).
    """
    if prototypes.shape[0] != self.num_classes or prototypes.shape[-1] != embedding.shape[-1]:
      raise ValueError(
        f"prototypes {prototypes.shape} do not match K={self.num_classes} classes of "
        f"{embedding.shape[-1]}-d embeddings."
      )
    features = normalise(nn.LayerNorm(name="feature_norm")(embedding.astype(jnp.float32)))
    cosines = jnp.einsum("...d,kmd->...km", features, normalise(prototypes))
    scores = jnp.max(cosines, axis=-1)
    logits = nn.LayerNorm(name="class_norm")(scores)
    return {
      "logits": logits,
      "pixel_logits": cosines.reshape(*cosines.shape[:-2], -1),
      "features": features,
    }


def balanced_assignments(
  cosines: jax.Array, weights: jax.Array, epsilon: float = 0.05, iterations: int = 3
) -> jax.Array:
  """Each pixel's prototype from a balanced assignment (ott-jax's Sinkhorn).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.nn.prototypes import balanced_assignments
    >>> cos = jnp.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.6], [0.1, 0.0]])
    >>> balanced_assignments(cos, jnp.ones(4), iterations=20).tolist()  # two per prototype
    [0, 0, 1, 1]

  Args:
    cosines: `[N, M]` cosines of the pixels to the class's prototypes.
    weights: `[N]` ≥ 0; the pixels taking part (0 = not this class). All zero: any answer.
    epsilon: entropic regularisation.
    iterations: Sinkhorn iterations.

  Returns:
    `[N]` int32 prototype indices.
  """
  total = jnp.sum(weights)
  a = jnp.where(total > 0, weights / jnp.maximum(total, 1e-12), 1.0 / weights.shape[0])
  b = jnp.full((cosines.shape[1],), 1.0 / cosines.shape[1])
  geom = geometry.Geometry(cost_matrix=-cosines.astype(jnp.float32), epsilon=epsilon)
  out = linear.solve(
    geom,
    a=a,
    b=b,
    threshold=0.0,
    min_iterations=iterations,
    max_iterations=iterations,
    inner_iterations=1,
  )
  # The plan's row i is ∝ exp((g_j − C_ij) / ε): its argmax does not depend on f_i (or on a_i,
  # so pixels of weight 0 get an answer too, which the caller ignores).
  return jnp.argmax(out.g[None, :] + cosines, axis=-1).astype(jnp.int32)


def update_prototypes(
  prototypes: jax.Array,
  features: jax.Array,
  cosines: jax.Array,
  logits: jax.Array,
  target: jax.Array,
  momentum: float,
  epsilon: float = 0.05,
  iterations: int = 3,
) -> tuple[jax.Array, jax.Array]:
  """One momentum update of every class's prototypes, and the pixel–prototype targets.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from mlsup_jax.nn.prototypes import init_prototypes, update_prototypes
    >>> protos = init_prototypes(jax.random.key(0), 2, 2, 4)
    >>> feats = jnp.eye(4)[jnp.array([0, 0, 1, 1])]
    >>> cos = jnp.einsum("nd,kmd->nkm", feats, protos)
    >>> logits = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> new, targets = update_prototypes(protos, feats, cos, logits, jnp.array([0, 0, 1, -1]), 0.9)
    >>> new.shape, targets.tolist()[3]
    ((2, 2, 4), -1)

  Args:
    prototypes: `[K, M, D]` unit vectors.
    features: `[N, D]` normalised pixel embeddings.
    cosines: `[N, K, M]` their cosines to `prototypes`.
    logits: `[N, K]` the head's class logits (a pixel updates its class only when correct).
    target: `[N]` int class per pixel, −1 = ignored.
    momentum: `new = momentum · old + (1 − momentum) · mean of the assigned pixels`.
    epsilon, iterations: the Sinkhorn settings.

  Returns:
    `(prototypes [K, M, D] unit vectors, pixel targets [N]: k · M + m, −1 where ignored)`; no
    gradient flows through either.
  """
  prototypes, features, cosines, logits = jax.lax.stop_gradient(
    (prototypes, features, cosines, logits)
  )
  num_classes, per_class, _ = prototypes.shape
  correct = jnp.argmax(logits, axis=-1) == target

  def one_class(k, protos_k, cos_k):
    member = (target == k).astype(jnp.float32)
    assigned = balanced_assignments(cos_k, member, epsilon, iterations)  # [N]
    onehot = jax.nn.one_hot(assigned, per_class, dtype=jnp.float32)
    weight = onehot * (member * correct)[:, None]  # [N, M]
    sums = weight.T @ features  # [M, D]
    counts = jnp.sum(weight, axis=0)
    moved = normalise(momentum * protos_k + (1.0 - momentum) * normalise(sums))
    return jnp.where(counts[:, None] > 0, moved, protos_k), assigned

  new, assigned = jax.vmap(one_class, in_axes=(0, 0, 1))(
    jnp.arange(num_classes), prototypes, cosines
  )  # [K, M, D], [K, N]
  safe = jnp.clip(target, 0, num_classes - 1)
  own = jnp.take_along_axis(assigned, safe[None, :], axis=0)[0]
  pixel_target = jnp.where(target >= 0, safe * per_class + own, -1)
  return normalise(new), pixel_target
