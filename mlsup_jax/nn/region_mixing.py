"""Cross-set region mixing for partially labelled data (LTUDA's strong views, seed 002).

A strong view pastes a region of image `i + shift` into image `i` (`nn/warps.mix`); with the
sub-datasets' batches concatenated in order and `shift` = one sub-dataset's batch size, every
pair crosses two sub-datasets, so a mixed image holds organs labelled in different sets. Two
region rules, each returning `[B, *S]` float masks (1 = take the partner's pixel):

* `cutmix_masks` — the authors' CutMix box: area a fraction `U(area_low, area_high)` of the image
  (0.02–0.4), aspect ratio `U(ratio_low, ratio_high)` (0.3–1/0.3) between the last two axes, the
  box wholly inside the image (the code redraws until it is; here the corner is drawn inside the
  range that fits, and a side longer than the image is cut to it). In 3-D the first axis takes
  the cube root of the area.
* `carvemix_masks` — CarveMix (Zhang et al., MICCAI 2021), which the paper uses and the public code
  lacks: the partner's *annotated* organ region (its label > 0: the organs its sub-dataset
  labels), grown by a margin of `margin` pixels (a max-filter, so the organ's border and some
  context come along, as CarveMix's distance-based carving does). Our ROI rule, chosen because
  the partner's label is the only organ annotation the step has: the pasted region then always
  carries a labelled organ from another set. Where the partner has no annotated organ in view,
  its CutMix box is used instead, so every image is still mixed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["carvemix_masks", "cutmix_masks", "paste"]


def cutmix_masks(
  rng: jax.Array,
  batch: int,
  spatial,
  area_low: float = 0.02,
  area_high: float = 0.4,
  ratio_low: float = 0.3,
  ratio_high: float = 1 / 0.3,
) -> jax.Array:
  """`[B, *S]` boxes with a random area fraction and aspect ratio (module docstring).

  Example:
    >>> import jax
    >>> from mlsup_jax.nn.region_mixing import cutmix_masks
    >>> masks = cutmix_masks(jax.random.key(0), 4, (32, 32))
    >>> masks.shape, bool(((masks == 0) | (masks == 1)).all())
    ((4, 32, 32), True)
  """
  spatial = tuple(int(n) for n in spatial)
  area_rng, ratio_rng, corner_rng = jax.random.split(rng, 3)
  area = jax.random.uniform(area_rng, (batch,), minval=area_low, maxval=area_high)
  ratio = jnp.exp(
    jax.random.uniform(ratio_rng, (batch,), minval=jnp.log(ratio_low), maxval=jnp.log(ratio_high))
  )
  dims = len(spatial)
  base = area ** (1.0 / dims) if dims == 3 else jnp.ones_like(area)
  plane = area / base if dims == 3 else area  # the in-plane area fraction
  sides = [base] * (dims - 2) + [jnp.sqrt(plane * ratio), jnp.sqrt(plane / ratio)]
  corner = jax.random.uniform(corner_rng, (batch, dims))
  inside = jnp.ones((batch, *spatial), bool)
  for axis, n in enumerate(spatial):
    side = jnp.minimum(sides[axis], 1.0)
    lo = corner[:, axis] * (1.0 - side)
    coord = (jnp.arange(n, dtype=jnp.float32) + 0.5) / n
    shape = [1] * dims
    shape[axis] = n
    coord = coord.reshape(shape)[None]
    expand = (-1,) + (1,) * dims
    inside = inside & (coord >= lo.reshape(expand)) & (coord < (lo + side).reshape(expand))
  return inside.astype(jnp.float32)


def carvemix_masks(
  rng: jax.Array, partner_label: jax.Array, margin: int = 2, **cutmix_kwargs
) -> jax.Array:
  """`[B, *S]` masks: the partner's annotated organs grown by `margin` pixels (module docstring).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from mlsup_jax.nn.region_mixing import carvemix_masks
    >>> label = jnp.zeros((2, 8, 8), jnp.int32).at[0, 3:5, 3:5].set(2)
    >>> masks = carvemix_masks(jax.random.key(0), label, margin=1)
    >>> int(masks[0].sum())  # the 2 × 2 organ grown by one pixel on every side
    16

  Args:
    rng: key for the fallback boxes.
    partner_label: `[B, *S]` the label map of each image's partner (already rolled by `shift`).
    margin: pixels added around the organ region.
    **cutmix_kwargs: the fallback boxes' ranges (`cutmix_masks`).
  """
  organ = (partner_label > 0).astype(jnp.float32)
  if margin > 0:
    window = (1,) + (2 * margin + 1,) * (organ.ndim - 1)
    organ = jax.lax.reduce_window(organ, -jnp.inf, jax.lax.max, window, (1,) * organ.ndim, "SAME")
  spatial = partner_label.shape[1:]
  boxes = cutmix_masks(rng, partner_label.shape[0], spatial, **cutmix_kwargs)
  has = jnp.any(organ > 0, axis=tuple(range(1, organ.ndim)))
  return jnp.where(has.reshape((-1,) + (1,) * len(spatial)), organ, boxes)


def paste(x: jax.Array, mask: jax.Array, shift: int) -> jax.Array:
  """`x [B, *S, …]` (any dtype: images, label maps, flags) with image `i + shift mod B`'s values
  where `mask [B, *S]` is 1.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.nn.region_mixing import paste
    >>> paste(jnp.array([[1, 1], [2, 2]]), jnp.array([[0, 1], [0, 0]]), 1).tolist()
    [[1, 2], [2, 2]]
  """
  take = mask.astype(bool).reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
  return jnp.where(take, jnp.roll(x, -shift, axis=0), x)
