"""Tests of mlsup_jax.losses: soft Dice, cross-entropy and the named weighted sum.

Reference values come from small numpy/scipy implementations of the documented formulas that
drop invalid examples by indexing (the library weights them instead).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import special

from configs import scunet as scunet_config
from mlsup_jax import losses
from mlsup_jax.losses import LOSSES, segmentation

# ----------------------------------------------------------------------------------------------
# Numpy references.


def _np_probs_targets(logits, labels):
  k = logits.shape[-1]
  if k == 1:
    return special.expit(logits), (labels[..., None] == 1).astype(np.float64)
  return special.softmax(logits, axis=-1), np.eye(k)[labels]


def _np_dice_loss(
  logits, labels, valid=None, smooth=1.0, per_sample=False, include_background=True
):
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels)
  if valid is not None:
    keep = np.asarray(valid) > 0
    logits, labels = logits[keep], labels[keep]
  p, g = _np_probs_targets(logits, labels)
  if p.shape[-1] > 1 and not include_background:
    p, g = p[..., 1:], g[..., 1:]
  if per_sample:
    per_example = []
    for pb, gb in zip(p, g, strict=True):
      axes = tuple(range(pb.ndim - 1))
      dice_k = (2 * np.sum(pb * gb, axis=axes) + smooth) / (
        np.sum(pb, axis=axes) + np.sum(gb, axis=axes) + smooth
      )
      per_example.append(dice_k.mean())
    return 1.0 - float(np.mean(per_example))
  axes = tuple(range(p.ndim - 1))
  dice_k = (2 * np.sum(p * g, axis=axes) + smooth) / (
    np.sum(p, axis=axes) + np.sum(g, axis=axes) + smooth
  )
  return 1.0 - float(dice_k.mean())


def _np_cross_entropy(logits, labels, valid=None, label_smoothing=0.0):
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels)
  if valid is not None:
    keep = np.asarray(valid) > 0
    logits, labels = logits[keep], labels[keep]
  k = logits.shape[-1]
  if k == 1:
    y = (labels == 1).astype(np.float64)
    x = logits[..., 0]
    per_pixel = -(y * special.log_expit(x) + (1 - y) * special.log_expit(-x))
  else:
    target = np.eye(k)[labels] * (1 - label_smoothing) + label_smoothing / k
    per_pixel = -np.sum(target * special.log_softmax(logits, axis=-1), axis=-1)
  return float(per_pixel.reshape(per_pixel.shape[0], -1).mean(axis=1).mean())


def _random_case(seed, batch=3, size=5, classes=1):
  rng = np.random.default_rng(seed)
  logits = rng.normal(scale=2.0, size=(batch, size, size, classes)).astype(np.float32)
  labels = rng.integers(0, max(classes, 2), size=(batch, size, size)).astype(np.int32)
  return logits, labels


def _dice(logits, labels, **kwargs):
  batch = {"label": jnp.asarray(labels)}
  if "valid" in kwargs:
    batch["valid"] = jnp.asarray(kwargs.pop("valid"))
  loss, metrics = segmentation.soft_dice(
    outputs={"logits": jnp.asarray(logits)}, batch=batch, **kwargs
  )
  return float(loss), metrics


# ----------------------------------------------------------------------------------------------
# Soft Dice.


@pytest.mark.parametrize("classes", [1, 3])
def test_soft_dice_perfect_prediction_is_zero(classes):
  _, labels = _random_case(0, classes=classes)
  if classes == 1:
    logits = np.where(labels[..., None] == 1, 30.0, -30.0).astype(np.float32)
  else:
    logits = 30.0 * np.eye(classes, dtype=np.float32)[labels]
  loss, metrics = _dice(logits, labels)
  assert loss == pytest.approx(0.0, abs=1e-5)
  assert float(metrics["dice"]) == pytest.approx(1.0, abs=1e-5)


def test_soft_dice_completely_wrong_prediction_is_near_one():
  labels = np.zeros((2, 8, 8), np.int32)
  labels[:, 2:6, 2:6] = 1
  logits = np.where(labels[..., None] == 1, -30.0, 30.0).astype(np.float32)
  # Intersection 0: loss = 1 − smooth / (Σp + Σg + smooth) = 1 − 1 / (96 + 32 + 1).
  loss, _ = _dice(logits, labels)
  assert loss == pytest.approx(1.0 - 1.0 / 129.0, rel=1e-5)


def test_soft_dice_hand_computed_tiny_batch():
  # Two 1×2 images, one sigmoid channel, logits 0 → p = 0.5 everywhere.
  logits = np.zeros((2, 1, 2, 1), np.float32)
  labels = np.array([[[1, 0]], [[1, 1]]], np.int32)
  # Batch Dice: Σp·g = 0.5·3 = 1.5, Σp = 2, Σg = 3 → 1 − (3 + 1) / (5 + 1) = 1/3.
  loss, _ = _dice(logits, labels)
  assert loss == pytest.approx(1.0 / 3.0, rel=1e-6)
  # Per sample: (1 + 1)/(1 + 1 + 1) = 2/3 and (2 + 1)/(1 + 2 + 1) = 3/4 → 1 − 17/24.
  loss, _ = _dice(logits, labels, per_sample=True)
  assert loss == pytest.approx(1.0 - (2 / 3 + 3 / 4) / 2, rel=1e-6)
  # Smoothing enters numerator and denominator.
  loss, _ = _dice(logits, labels, smooth=0.0)
  assert loss == pytest.approx(1.0 - 3.0 / 5.0, rel=1e-6)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("smooth", [1.0, 0.1])
def test_soft_dice_binary_matches_numpy(per_sample, smooth):
  logits, labels = _random_case(1, batch=4, size=6, classes=1)
  loss, metrics = _dice(logits, labels, smooth=smooth, per_sample=per_sample)
  expected = _np_dice_loss(logits, labels, smooth=smooth, per_sample=per_sample)
  assert loss == pytest.approx(expected, rel=1e-5)
  assert float(metrics["dice"]) == pytest.approx(1.0 - expected, rel=1e-5)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
def test_soft_dice_multiclass_matches_numpy(per_sample, include_background):
  logits, labels = _random_case(2, batch=3, size=5, classes=4)
  loss, _ = _dice(logits, labels, per_sample=per_sample, include_background=include_background)
  expected = _np_dice_loss(
    logits, labels, per_sample=per_sample, include_background=include_background
  )
  assert loss == pytest.approx(expected, rel=1e-5)


def test_soft_dice_background_choice_matters():
  logits, labels = _random_case(3, classes=3)
  with_bg, _ = _dice(logits, labels, include_background=True)
  without_bg, _ = _dice(logits, labels, include_background=False)
  assert with_bg != pytest.approx(without_bg, rel=1e-3)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("classes", [1, 3])
def test_soft_dice_ignores_invalid_examples(per_sample, classes):
  logits, labels = _random_case(4, batch=3, classes=classes)
  clean, _ = _dice(logits, labels, valid=np.ones(3, np.int32), per_sample=per_sample)
  # Append a garbage example marked invalid: huge wrong logits, all-foreground labels.
  garbage_logits = np.full((1, *logits.shape[1:]), -1e3, np.float32)
  garbage_logits[..., 0] = 1e3
  garbage_labels = np.full((1, *labels.shape[1:]), classes - 1 if classes > 1 else 1, np.int32)
  padded_logits = np.concatenate([logits, garbage_logits])
  padded_labels = np.concatenate([labels, garbage_labels])
  valid = np.array([1, 1, 1, 0], np.int32)
  padded, _ = _dice(padded_logits, padded_labels, valid=valid, per_sample=per_sample)
  assert padded == pytest.approx(clean, rel=1e-6)
  assert padded == pytest.approx(
    _np_dice_loss(padded_logits, padded_labels, valid=valid, per_sample=per_sample), rel=1e-5
  )
  # Without the mask the garbage example does change the loss.
  unmasked, _ = _dice(padded_logits, padded_labels, per_sample=per_sample)
  assert unmasked != pytest.approx(clean, rel=1e-3)


@pytest.mark.parametrize("classes", [1, 3])
def test_soft_dice_gradient_finite_under_jit(classes):
  logits, labels = _random_case(5, classes=classes)
  # Saturated logits must not give NaN gradients.
  logits[0, 0, 0] = 80.0
  logits[0, 0, 1] = -80.0
  batch = {"label": jnp.asarray(labels), "valid": jnp.array([1, 1, 0], jnp.int32)}

  @jax.jit
  def grad_fn(x):
    return jax.grad(lambda z: segmentation.soft_dice(outputs={"logits": z}, batch=batch)[0])(x)

  grad = np.asarray(grad_fn(jnp.asarray(logits)))
  assert grad.shape == logits.shape
  assert np.all(np.isfinite(grad))
  assert np.any(grad != 0)
  # The invalid example gets exactly zero gradient.
  np.testing.assert_array_equal(grad[2], 0.0)
  # Gradient agrees with a central finite difference in one coordinate.
  eps = 1e-2
  idx = (1, 2, 3, 0)
  plus, minus = logits.copy(), logits.copy()
  plus[idx] += eps
  minus[idx] -= eps
  numeric = (
    _np_dice_loss(plus, labels, valid=[1, 1, 0]) - _np_dice_loss(minus, labels, valid=[1, 1, 0])
  ) / (2 * eps)
  assert grad[idx] == pytest.approx(numeric, rel=1e-2, abs=1e-6)


# ----------------------------------------------------------------------------------------------
# Cross-entropy.


def _ce(logits, labels, **kwargs):
  batch = {"label": jnp.asarray(labels)}
  if "valid" in kwargs:
    batch["valid"] = jnp.asarray(kwargs.pop("valid"))
  loss, metrics = segmentation.cross_entropy(
    outputs={"logits": jnp.asarray(logits)}, batch=batch, **kwargs
  )
  assert float(metrics["cross_entropy"]) == float(loss)
  return float(loss)


def test_sigmoid_bce_matches_numpy():
  logits, labels = _random_case(6, batch=3, size=4, classes=1)
  assert _ce(logits, labels) == pytest.approx(_np_cross_entropy(logits, labels), rel=1e-5)


def test_sigmoid_bce_hand_value():
  # logit 0 → p = 0.5 → BCE = log 2 regardless of the label.
  logits = np.zeros((2, 2, 2, 1), np.float32)
  labels = np.array([[[0, 1], [1, 0]], [[1, 1], [0, 0]]], np.int32)
  assert _ce(logits, labels) == pytest.approx(np.log(2.0), rel=1e-6)


def test_sigmoid_bce_ignores_label_smoothing():
  # Documented: smoothing applies to K > 1 only.
  logits, labels = _random_case(7, classes=1)
  assert _ce(logits, labels, label_smoothing=0.2) == pytest.approx(_ce(logits, labels), rel=1e-7)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.3])
def test_softmax_ce_matches_numpy(label_smoothing):
  logits, labels = _random_case(8, batch=3, size=4, classes=4)
  got = _ce(logits, labels, label_smoothing=label_smoothing)
  expected = _np_cross_entropy(logits, labels, label_smoothing=label_smoothing)
  assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("classes", [1, 3])
def test_cross_entropy_ignores_invalid_examples(classes):
  logits, labels = _random_case(9, batch=4, classes=classes)
  valid = np.array([1, 0, 1, 1], np.int32)
  logits[1] = 500.0 * np.sign(logits[1])  # garbage in the invalid example
  got = _ce(logits, labels, valid=valid)
  assert got == pytest.approx(_np_cross_entropy(logits, labels, valid=valid), rel=1e-5)
  assert got == pytest.approx(_ce(logits[valid == 1], labels[valid == 1]), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# Weighted sum over named terms.


SEG_ROLE = losses.LossRole(outputs=("logits",))


def _loss_config(**weights) -> ml_collections.ConfigDict:
  weights = weights or {"soft_dice": 2.0, "cross_entropy": 0.5}
  return losses.loss_section(SEG_ROLE, weights, {"soft_dice": {"smooth": 0.5, "per_sample": True}})


def test_weighted_sum_applies_weights_and_hparams():
  logits, labels = _random_case(10, classes=1)
  outputs, batch = {"logits": jnp.asarray(logits)}, {"label": jnp.asarray(labels)}
  total, metrics = losses.weighted_sum(_loss_config(), outputs=outputs, batch=batch)
  dice = _np_dice_loss(logits, labels, smooth=0.5, per_sample=True)
  ce = _np_cross_entropy(logits, labels)
  assert float(total) == pytest.approx(2.0 * dice + 0.5 * ce, rel=1e-5)
  assert set(metrics) == {"loss/soft_dice", "loss/cross_entropy", "dice", "cross_entropy"}
  assert float(metrics["loss/soft_dice"]) == pytest.approx(dice, rel=1e-5)
  assert float(metrics["loss/cross_entropy"]) == pytest.approx(ce, rel=1e-5)
  assert float(metrics["dice"]) == pytest.approx(1.0 - dice, rel=1e-5)


def test_section_lists_every_applicable_term_with_signature_defaults():
  section = losses.loss_section(SEG_ROLE, {"soft_dice": 3.0})
  # Every registered term that reads only `logits` is listed, switched off unless weighted.
  assert set(section) == {
    "cross_entropy",
    "soft_dice",
    "partial_bce",
    "marginal_cross_entropy",
    "exclusion_dice",
  }
  assert section.cross_entropy.to_dict() == {
    "weight": 0.0,
    "label_smoothing": 0.0,
  }
  assert section.soft_dice.to_dict() == {
    "weight": 3.0,
    "smooth": 1.0,
    "per_sample": False,
    "include_background": True,
  }
  logits, labels = _random_case(11, classes=1)
  total, metrics = losses.weighted_sum(
    section, outputs={"logits": jnp.asarray(logits)}, batch={"label": jnp.asarray(labels)}
  )
  assert float(total) == pytest.approx(3.0 * _np_dice_loss(logits, labels), rel=1e-5)
  assert set(metrics) == {"loss/soft_dice", "dice"}
  # A per-pixel objective lists only terms with a per-pixel form (not Dice).
  per_pixel = losses.loss_section(losses.LossRole(("logits",), per_pixel=True), {})
  assert set(per_pixel) == {"cross_entropy"}


def test_per_pixel_reduction_is_the_same_function_unreduced():
  logits, labels = _random_case(15, classes=3)
  outputs, batch = {"logits": jnp.asarray(logits)}, {"label": jnp.asarray(labels)}
  mean, _ = losses.weighted_sum(_loss_config(cross_entropy=2.0), outputs=outputs, batch=batch)
  role = losses.LossRole(("logits",), per_pixel=True)
  section = losses.loss_section(role, {"cross_entropy": 2.0})
  pixels, metrics = losses.weighted_sum(section, outputs=outputs, batch=batch, per_pixel=True)
  assert pixels.shape == labels.shape
  np.testing.assert_allclose(float(jnp.mean(pixels)), float(mean), rtol=1e-6)
  assert float(metrics["loss/cross_entropy"]) == pytest.approx(float(mean) / 2.0, rel=1e-6)


def test_section_errors_name_the_term_and_what_it_accepts():
  with pytest.raises(KeyError, match="no_such_loss.*cross_entropy"):
    losses.loss_section(SEG_ROLE, {"no_such_loss": 1.0})
  with pytest.raises(ValueError, match="does not apply"):
    losses.loss_section(SEG_ROLE, {"query_distribution": 1.0})
  with pytest.raises(ValueError, match="no hyperparameter.*smoothing"):
    losses.loss_section(SEG_ROLE, {}, {"soft_dice": {"smoothing": 2.0}})


@pytest.mark.parametrize(
  "edit, message",
  [
    (lambda c: c.__setitem__("no_such_loss", {"weight": 1.0}), "unknown loss term"),
    (lambda c: c.soft_dice.__setitem__("gamma", 2.0), "unknown hyperparameter"),
    (lambda c: c.soft_dice.__delitem__("weight"), "with a 'weight'"),
    (lambda c: [c[n].__setitem__("weight", 0.0) for n in c], "every term has weight 0"),
    (lambda c: c.__setitem__("query_distribution", {"weight": 1.0}), "provides"),
  ],
)
def test_check_loss_config_fails_before_compilation(edit, message):
  config = _loss_config()
  with config.unlocked():
    edit(config)
  with pytest.raises(ValueError, match=message):
    losses.check_loss_config(config, {"": SEG_ROLE})


def test_check_loss_config_needs_one_section_per_role():
  roles = {"train": SEG_ROLE, "meta": SEG_ROLE}
  config = losses.roles_section(roles, {"train": {"cross_entropy": 1.0}, "meta": {"soft_dice": 1}})
  losses.check_loss_config(config, roles)
  with pytest.raises(ValueError, match="one section per objective"):
    losses.check_loss_config(config.train, roles)


def test_two_terms_reporting_the_same_metric_fail_at_trace_time():
  def also_cross_entropy(*, outputs, batch):
    del batch
    value = jnp.mean(outputs["logits"])
    return value, {"cross_entropy": value}

  LOSSES.register("test_clashing_metric", losses.LossTerm(also_cross_entropy, ("logits",)))
  try:
    section = _loss_config(cross_entropy=1.0, test_clashing_metric=1.0)
    logits, labels = _random_case(16)
    step = jax.jit(lambda o, b: losses.weighted_sum(section, outputs=o, batch=b))
    with pytest.raises(ValueError, match="cross_entropy.*already reports"):
      step({"logits": jnp.asarray(logits)}, {"label": jnp.asarray(labels)})
  finally:
    LOSSES.unregister("test_clashing_metric")


def test_fork_recipe_register_a_new_loss_and_select_it_by_config():
  """The README's recipe: one function, one table line, config overrides only."""

  def mean_square_logit(*, outputs, batch, scale=1.0):
    del batch
    value = scale * jnp.mean(jnp.square(outputs["logits"]))
    return value, {"mean_square_logit": value}

  logits, labels = _random_case(14)
  outputs, batch = {"logits": jnp.asarray(logits)}, {"label": jnp.asarray(labels)}
  assert "test_mean_square_logit" not in LOSSES
  LOSSES.register("test_mean_square_logit", losses.LossTerm(mean_square_logit, ("logits",)))
  try:
    config = scunet_config.get_config("smoke")
    # The config lists the new term, off, with its default hyperparameters.
    assert config.loss.test_mean_square_logit.to_dict() == {"weight": 0.0, "scale": 1.0}
    total, metrics = losses.weighted_sum(config.loss, outputs=outputs, batch=batch)
    assert float(total) == pytest.approx(_np_dice_loss(logits, labels), rel=1e-5)
    # Switch it on and tune it through the (locked) config alone.
    config.loss.test_mean_square_logit.weight = 0.5
    config.loss.test_mean_square_logit.scale = 4.0
    config.loss.soft_dice.weight = 0.0
    total, metrics = losses.weighted_sum(config.loss, outputs=outputs, batch=batch)
    expected = 0.5 * 4.0 * float(np.mean(np.square(logits.astype(np.float64))))
    assert float(total) == pytest.approx(expected, rel=1e-5)
    assert set(metrics) == {"loss/test_mean_square_logit", "mean_square_logit"}
    # Registering the same name twice is refused unless replacing.
    with pytest.raises(KeyError, match="already registered"):
      LOSSES.register("test_mean_square_logit", losses.LossTerm(mean_square_logit))
  finally:
    LOSSES.unregister("test_mean_square_logit")
  assert "test_mean_square_logit" not in LOSSES
  with pytest.raises(ValueError, match="unknown loss term"):
    losses.check_loss_config(config.loss, {"": SEG_ROLE})
