"""Partial-label losses: per-sample masking (the all-unknown case), marginal merge, exclusion."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from optax import softmax_cross_entropy_with_integer_labels

from mlsup_jax.losses.partial_labels import exclusion_dice, marginal_cross_entropy, partial_bce


def _bce(logit, target):
  p = 1 / (1 + np.exp(-logit))
  return -(target * np.log(p) + (1 - target) * np.log(1 - p))


def test_partial_bce_masks_per_sample():
  logits = jnp.array([[[[2.0, -1.0]]], [[[0.5, 3.0]]]])  # [2, 1, 1, 2]
  label = jnp.array([[[1]], [[2]]])  # sample 0: organ 0; sample 1: organ 1
  known = jnp.array([[True, False], [True, True]])
  loss, metrics = partial_bce(outputs={"logits": logits}, batch={"label": label, "known": known})
  expected = (_bce(2.0, 1) + _bce(0.5, 0) + _bce(3.0, 1)) / 3  # sample 0's organ 1 left out
  assert float(loss) == pytest.approx(expected, rel=1e-6)
  assert float(metrics["known_fraction"]) == 0.75


def test_partial_bce_all_unknown_is_zero_with_finite_gradients():
  logits = jnp.ones((2, 3, 3, 2))
  batch = {"label": jnp.zeros((2, 3, 3), jnp.int32), "known": jnp.zeros((2, 2), bool)}
  loss, _ = partial_bce(outputs={"logits": logits}, batch=batch)
  assert float(loss) == 0.0
  grad = jax.grad(lambda x: partial_bce(outputs={"logits": x}, batch=batch)[0])(logits)
  assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).sum()) == 0.0


def test_partial_bce_per_pixel_known_equals_per_sample_flags_and_masks_pixels():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(2, 4, 4, 3)).astype(np.float32))
  label = jnp.asarray(rng.integers(0, 4, (2, 4, 4)))
  known = jnp.array([[True, False, True], [False, False, True]])
  per_sample, _ = partial_bce(outputs={"logits": logits}, batch={"label": label, "known": known})
  pixels = jnp.broadcast_to(known[:, None, None, :], logits.shape)
  per_pixel, _ = partial_bce(outputs={"logits": logits}, batch={"label": label, "known": pixels})
  assert float(per_pixel) == pytest.approx(float(per_sample), rel=1e-6)
  # A mixed sample: organ 0 known on the left half only — the right half does not count.
  half = pixels.at[0, :, 2:, 0].set(False)
  changed = logits.at[0, :, 2:, 0].add(100.0)
  a, _ = partial_bce(outputs={"logits": logits}, batch={"label": label, "known": half})
  b, _ = partial_bce(outputs={"logits": changed}, batch={"label": label, "known": half})
  assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_marginal_cross_entropy_is_plain_ce_when_everything_is_known():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 4, 4, 3)).astype(np.float32))
  label = jnp.asarray(rng.integers(0, 3, (2, 4, 4)))
  batch = {"label": label, "known": jnp.ones((2, 2), bool)}
  loss, _ = marginal_cross_entropy(outputs={"logits": logits}, batch=batch)
  expected = softmax_cross_entropy_with_integer_labels(logits, label).mean()
  assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_marginal_cross_entropy_merges_unknown_organs_into_background():
  probs = np.array([0.1, 0.6, 0.3])
  logits = jnp.log(jnp.asarray(probs))[None, None, None]
  batch = {"label": jnp.zeros((1, 1, 1), jnp.int32), "known": jnp.array([[False, False]])}
  loss, _ = marginal_cross_entropy(outputs={"logits": logits}, batch=batch)
  assert float(loss) == pytest.approx(0.0, abs=1e-6)  # everything is "background" here
  batch["known"] = jnp.array([[True, False]])
  loss, _ = marginal_cross_entropy(outputs={"logits": logits}, batch=batch)
  assert float(loss) == pytest.approx(-np.log(0.1 + 0.3), rel=1e-6)


def test_exclusion_dice_penalises_overlap_with_other_organs_only():
  label = jnp.array([[[1, 2], [0, 0]]])  # organ 0 at (0,0), organ 1 at (0,1)
  perfect = jnp.where(
    jax.nn.one_hot(label, 3) > 0, 20.0, -20.0
  )  # predicts the labels (background where 0)
  loss, _ = exclusion_dice(outputs={"logits": perfect}, batch={"label": label}, smooth=0.0)
  assert float(loss) == pytest.approx(0.0, abs=1e-6)
  swapped = perfect[..., jnp.array([0, 2, 1])]  # organ 0 predicted where organ 1 is labelled
  loss, _ = exclusion_dice(outputs={"logits": swapped}, batch={"label": label}, smooth=0.0)
  assert float(loss) == pytest.approx(1.0, abs=1e-6)
  empty = {"label": jnp.zeros((1, 2, 2), jnp.int32)}
  assert float(exclusion_dice(outputs={"logits": perfect}, batch=empty)[0]) == 0.0


def test_known_must_have_one_flag_per_organ():
  with pytest.raises(ValueError, match="one flag per organ"):
    partial_bce(
      outputs={"logits": jnp.zeros((1, 2, 2, 3))},
      batch={"label": jnp.zeros((1, 2, 2), jnp.int32), "known": jnp.ones((1, 2), bool)},
    )
