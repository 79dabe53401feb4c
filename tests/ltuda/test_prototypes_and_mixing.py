"""LTUDA's building blocks: prototype heads and updates (ott-jax Sinkhorn), cross-set mixing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsup_jax.losses.prototypes import prototype_contrast, prototype_distance
from mlsup_jax.nn.prototypes import (
  PrototypeClassifier,
  balanced_assignments,
  init_prototypes,
  normalise,
  update_prototypes,
)
from mlsup_jax.nn.region_mixing import carvemix_masks, cutmix_masks, paste


def test_balanced_assignment_splits_a_class_evenly_where_argmax_would_not():
  # Every pixel is closest to prototype 0; a balanced plan still gives prototype 1 half of them.
  rng = np.random.default_rng(0)
  cos = jnp.asarray(np.stack([0.9 + 0.01 * rng.random(40), 0.5 + 0.3 * rng.random(40)], 1))
  assigned = np.asarray(balanced_assignments(cos, jnp.ones(40), iterations=20))
  assert 15 <= (assigned == 1).sum() <= 25
  # Those moved to prototype 1 are the pixels relatively closest to it.
  gap = np.asarray(cos[:, 1] - cos[:, 0])
  assert gap[assigned == 1].min() >= gap[assigned == 0].max() - 1e-6


def test_balanced_assignment_ignores_zero_weight_pixels():
  cos = jnp.asarray(np.random.default_rng(1).random((30, 3)))
  weights = jnp.zeros(30).at[:6].set(1.0)
  assigned = np.asarray(balanced_assignments(cos, weights, iterations=30))[:6]
  assert sorted(np.bincount(assigned, minlength=3).tolist()) == [2, 2, 2]


def test_prototype_update_moves_only_with_correct_pixels_and_keeps_unit_norm():
  protos = init_prototypes(jax.random.key(0), 2, 2, 4)
  feats = normalise(jnp.asarray(np.random.default_rng(2).normal(size=(8, 4)), jnp.float32))
  cos = jnp.einsum("nd,kmd->nkm", feats, protos)
  target = jnp.array([0, 0, 0, 0, 1, 1, -1, -1])
  wrong = jnp.tile(jnp.array([[0.0, 1.0]]), (8, 1))  # predicts class 1 everywhere
  new, pixel_target = update_prototypes(protos, feats, cos, wrong, target, momentum=0.5)
  np.testing.assert_allclose(new[0], protos[0], atol=1e-6)  # class 0: no correct pixel
  assert not np.allclose(new[1], protos[1])
  np.testing.assert_allclose(jnp.linalg.norm(new, axis=-1), 1.0, atol=1e-5)
  targets = np.asarray(pixel_target)
  assert (targets[:4] // 2 == 0).all() and (targets[4:6] // 2 == 1).all()
  assert (targets[6:] == -1).all()


def test_prototype_head_shares_norms_between_prototype_sets_and_is_differentiable():
  head = PrototypeClassifier(num_classes=3)
  a = init_prototypes(jax.random.key(0), 3, 2, 8)
  b = init_prototypes(jax.random.key(1), 3, 2, 8)
  x = jax.random.normal(jax.random.key(2), (2, 4, 4, 8))
  params = head.init(jax.random.key(3), x, a)
  out_a, out_b = head.apply(params, x, a), head.apply(params, x, b)
  assert out_a["logits"].shape == (2, 4, 4, 3)
  assert not np.allclose(out_a["logits"], out_b["logits"])
  grad = jax.grad(lambda z: jnp.sum(head.apply(params, z, a)["logits"][..., 0]))(x)
  assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).sum()) > 0
  with pytest.raises(ValueError, match="do not match"):
    head.apply(params, x, a[:2])


def test_ppc_and_ppd_ignore_unassigned_pixels():
  logits = jnp.array([[[0.9, 0.1, 0.3], [0.2, 0.8, 0.1]]])
  target = jnp.array([[0, -1]])
  ppc, _ = prototype_contrast(outputs={"pixel_logits": logits, "pixel_target": target}, batch={})
  expected = -jax.nn.log_softmax(logits[0, 0])[0]
  assert float(ppc) == pytest.approx(float(expected), rel=1e-6)
  ppd, _ = prototype_distance(outputs={"pixel_logits": logits, "pixel_target": target}, batch={})
  assert float(ppd) == pytest.approx(0.01, rel=1e-5)
  none = jnp.full((1, 2), -1)
  ppc0, _ = prototype_contrast(outputs={"pixel_logits": logits, "pixel_target": none}, batch={})
  assert float(ppc0) == 0.0


def test_cutmix_boxes_have_the_drawn_area_and_stay_inside():
  masks = np.asarray(cutmix_masks(jax.random.key(0), 256, (64, 64)))
  area = masks.mean(axis=(1, 2))
  assert 0.01 <= area.min() and area.max() <= 0.42
  # Boxes are axis-aligned rectangles: rows with any pixel all have the same count.
  for m in masks[:16]:
    rows = m.sum(1)
    assert len(set(rows[rows > 0].tolist())) == 1
  masks3 = cutmix_masks(jax.random.key(1), 4, (8, 16, 16))
  assert masks3.shape == (4, 8, 16, 16)


def test_cross_set_paste_takes_the_partner_set_and_carvemix_pastes_its_organ():
  # Two sub-datasets of two images each: shift 2 pairs image i with image i + 2.
  label = jnp.zeros((4, 8, 8), jnp.int32).at[2, 2:4, 2:4].set(3)
  image = jnp.arange(4, dtype=jnp.float32)[:, None, None, None] * jnp.ones((4, 8, 8, 1))
  mask = carvemix_masks(jax.random.key(0), jnp.roll(label, -2, axis=0), margin=1)
  mixed_label = paste(label, mask, 2)
  mixed_image = paste(image, mask, 2)
  assert int((mixed_label[0] == 3).sum()) == 4  # image 0 received image 2's organ
  assert float(mixed_image[0, 2, 2, 0]) == 2.0 and float(mixed_image[0, 7, 7, 0]) == 0.0
  assert int(mask[0].sum()) == 16  # the organ grown by one pixel
  # Image 1's partner (image 3) has no organ: a CutMix box is used instead.
  assert 0 < float(mask[1].mean()) < 1
