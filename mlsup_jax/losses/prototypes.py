"""Pixel–prototype losses of LTUDA's prototype heads (ProtoSeg's PPC and PPD, seed 002).

Both read the raw cosines of every pixel to every prototype (`pixel_logits: [B, *S, K·M]`) and
each pixel's assigned prototype (`pixel_target: [B, *S]`, `k · M + m`, −1 = ignored; from
`nn/prototypes.update_prototypes`):

* `prototype_contrast` (PPC): cross-entropy of the pixel over all prototypes with its assigned
  one as the class — pulls it to its prototype, away from the others;
* `prototype_distance` (PPD): `(1 − cos to the assigned prototype)²` — compactness.

Each is the mean over the pixels that are not ignored (0 when none is).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

__all__ = ["prototype_contrast", "prototype_distance"]


def _assigned(outputs: dict):
  logits = outputs["pixel_logits"].astype(jnp.float32)
  target = outputs["pixel_target"]
  valid = target >= 0
  return logits, jnp.where(valid, target, 0).astype(jnp.int32), valid.astype(jnp.float32)


def prototype_contrast(*, outputs: dict, batch: dict):
  """PPC: cross-entropy over the prototypes (module docstring).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.prototypes import prototype_contrast
    >>> outputs = {"pixel_logits": jnp.zeros((1, 2, 4)), "pixel_target": jnp.array([[1, -1]])}
    >>> round(float(prototype_contrast(outputs=outputs, batch={})[0]), 4)  # ln 4
    1.3863

  Args:
    outputs: `pixel_logits: [B, *S, K·M]`, `pixel_target: [B, *S]` (−1 = ignored).
    batch: unused.
  """
  del batch
  logits, target, valid = _assigned(outputs)
  per_pixel = optax.softmax_cross_entropy_with_integer_labels(logits, target)
  loss = jnp.sum(per_pixel * valid) / jnp.maximum(jnp.sum(valid), 1.0)
  return loss, {"prototype_pixels": jnp.mean(valid)}


def prototype_distance(*, outputs: dict, batch: dict):
  """PPD: `(1 − cosine to the assigned prototype)²` (module docstring).

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses.prototypes import prototype_distance
    >>> outputs = {"pixel_logits": jnp.array([[[0.5, 1.0]]]), "pixel_target": jnp.array([[0]])}
    >>> float(prototype_distance(outputs=outputs, batch={})[0])
    0.25
  """
  del batch
  logits, target, valid = _assigned(outputs)
  cosine = jnp.take_along_axis(logits, target[..., None], axis=-1)[..., 0]
  loss = jnp.sum((1.0 - cosine) ** 2 * valid) / jnp.maximum(jnp.sum(valid), 1.0)
  return loss, {}
