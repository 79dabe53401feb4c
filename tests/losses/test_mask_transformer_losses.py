"""Tests of the mask-transformer losses (mlsup_jax.losses.mask_transformer).

The query-distribution (QD) loss and the deep-supervision sum are checked against numpy
references written from the documented formulas; each test jits one function.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import special

from configs import maxquery as maxquery_config
from mlsup_jax import losses
from mlsup_jax.losses import mask_transformer

SPLIT = (16, 4, 12)
GROUPS = (0, 1, 2, 2, 2)  # background, organ, three tumour classes

# ----------------------------------------------------------------------------------------------
# Numpy references.


def _np_qd(mask_logits, labels, split, class_groups, valid=None):
  """Softmax over queries, group sums, −log of the label group; mean over pixels, then examples."""
  probs = special.softmax(np.asarray(mask_logits, np.float64), axis=-1)
  group_of_query = np.concatenate([np.full(n, g) for g, n in enumerate(split)])
  group_probs = np.stack(
    [probs[..., group_of_query == g].sum(-1) for g in range(len(split))], axis=-1
  )
  target = np.asarray(class_groups)[np.asarray(labels)]
  per_pixel = -np.log(np.take_along_axis(group_probs, target[..., None], axis=-1)[..., 0])
  per_example = per_pixel.reshape(per_pixel.shape[0], -1).mean(1)
  if valid is not None:
    per_example = per_example[np.asarray(valid) > 0]
  return per_example.mean()


def _np_semantic_log_probs(mask_logits, class_logits):
  assign = special.softmax(np.asarray(mask_logits, np.float64), axis=-1)
  classes = special.softmax(np.asarray(class_logits, np.float64), axis=-1)
  b, n, k = classes.shape
  seg = np.einsum("bpn,bnk->bpk", assign.reshape(b, -1, n), classes)
  return np.log(seg).reshape(*assign.shape[:-1], k)


def _centre_sample(label, spatial):
  """Nearest down-sampling by explicit block-centre indices `i · f + f // 2`."""
  index = [
    np.arange(s) * (full // s) + (full // s) // 2
    for full, s in zip(label.shape[1:], spatial, strict=True)
  ]
  return label[(slice(None), *np.ix_(*index))]


# ----------------------------------------------------------------------------------------------
# query_groups and the QD loss.


def test_query_groups():
  groups = np.asarray(jax.jit(lambda: mask_transformer.query_groups(SPLIT))())
  np.testing.assert_array_equal(groups, [0] * 16 + [1] * 4 + [2] * 12)
  assert groups.dtype == np.int32
  with pytest.raises(ValueError, match="positive"):
    mask_transformer.query_groups(())
  with pytest.raises(ValueError, match="positive"):
    mask_transformer.query_groups((4, 0, 2))


def test_query_distribution_matches_numpy():
  rng = np.random.default_rng(0)
  logits_2d = (rng.normal(size=(3, 4, 5, 32)) * 2).astype(np.float32)
  labels_2d = rng.integers(0, 5, size=(3, 4, 5)).astype(np.int32)
  valid = np.array([1, 0, 1], np.float32)
  logits_3d = (rng.normal(size=(2, 2, 3, 4, 12)) * 2).astype(np.float32)
  labels_3d = rng.integers(0, 3, size=(2, 2, 3, 4)).astype(np.int32)

  @jax.jit
  def run(logits_2d, labels_2d, valid, logits_3d, labels_3d):
    qd = mask_transformer.query_distribution
    plain = {"label": labels_2d}
    return {
      "plain": qd(outputs={"mask_logits": logits_2d}, batch=plain, query_split=SPLIT),
      "valid": qd(
        outputs={"mask_logits": logits_2d}, batch={**plain, "valid": valid}, query_split=SPLIT
      ),
      "other_split": qd(outputs={"mask_logits": logits_2d}, batch=plain, query_split=(8, 4, 20)),
      "3d": qd(
        outputs={"mask_logits": logits_3d},
        batch={"label": labels_3d},
        query_split=(2, 6, 4),
        class_groups=(1, 0, 2),
      ),
    }

  out = jax.device_get(run(logits_2d, labels_2d, valid, logits_3d, labels_3d))
  expected = {
    "plain": _np_qd(logits_2d, labels_2d, SPLIT, GROUPS),
    "valid": _np_qd(logits_2d, labels_2d, SPLIT, GROUPS, valid),
    "other_split": _np_qd(logits_2d, labels_2d, (8, 4, 20), GROUPS),
    "3d": _np_qd(logits_3d, labels_3d, (2, 6, 4), (1, 0, 2)),
  }
  for name, value in expected.items():
    loss, metrics = out[name]
    assert float(loss) == pytest.approx(value, rel=1e-5), name
    assert float(metrics["qd_loss"]) == float(loss)
  # The invalid example changes the mean: masking is real.
  assert expected["valid"] != pytest.approx(expected["plain"], rel=1e-3)


def test_group_balanced_query_distribution_matches_a_loop():
  """Mean per target group over the valid pixels of the batch, then over the groups present."""
  rng = np.random.default_rng(4)
  logits = (rng.normal(size=(3, 6, 5, 32)) * 2).astype(np.float32)
  labels = np.zeros((3, 6, 5), np.int32)  # Mostly background, as in CT.
  labels[:, 2:4, 1:3] = 1
  labels[0, 0, 0] = 3  # One tumour pixel in a valid example …
  labels[1, 5, 4] = 2  # … and one in the invalid example (ignored).
  valid = np.array([1, 0, 1], np.float32)
  loss, _ = mask_transformer.query_distribution(
    outputs={"mask_logits": logits},
    batch={"label": labels, "valid": valid},
    query_split=SPLIT,
    balance="group_balanced",
  )
  probs = special.softmax(logits.astype(np.float64), axis=-1)
  group_of_query = np.concatenate([np.full(n, g) for g, n in enumerate(SPLIT)])
  per_group = {}
  for b in np.flatnonzero(valid):
    for i, j in np.ndindex(*labels.shape[1:]):
      group = GROUPS[labels[b, i, j]]
      mass = probs[b, i, j, group_of_query == group].sum()
      per_group.setdefault(group, []).append(-np.log(mass))
  expected = np.mean([np.mean(v) for v in per_group.values()])
  assert sorted(per_group) == [0, 1, 2]
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  # The single tumour pixel weighs a third of the loss, unlike in the pixel mean.
  pixel = mask_transformer.query_distribution(
    outputs={"mask_logits": logits}, batch={"label": labels, "valid": valid}, query_split=SPLIT
  )[0]
  assert float(pixel) != pytest.approx(expected, rel=1e-3)
  with pytest.raises(ValueError, match="balance"):
    mask_transformer.query_distribution(
      outputs={"mask_logits": logits}, batch={"label": labels}, balance="sum"
    )


def test_query_distribution_rewards_mass_in_the_label_group():
  """≈ 0 when each pixel's assignment mass sits in its label's group, large elsewhere."""
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 5, size=(2, 6, 6)).astype(np.int32)
  group_of_query = np.repeat(np.arange(3), SPLIT)
  label_group = np.asarray(GROUPS)[labels]
  right = np.where(group_of_query == label_group[..., None], 10.0, -10.0).astype(np.float32)
  wrong = np.where(group_of_query == (label_group[..., None] + 1) % 3, 10.0, -10.0).astype(
    np.float32
  )
  uniform = np.zeros_like(right)

  @jax.jit
  def run(right, wrong, uniform, labels):
    return [
      mask_transformer.query_distribution(outputs={"mask_logits": m}, batch={"label": labels})[0]
      for m in (right, wrong, uniform)
    ]

  right_loss, wrong_loss, uniform_loss = (float(x) for x in run(right, wrong, uniform, labels))
  assert right_loss < 1e-6
  assert wrong_loss > 19.0  # −log(e^{−20}-ish)
  # Uniform affinities: G_g = N_g / N, so the loss is the mean of −log(N_g / N).
  fraction = np.asarray(SPLIT)[label_group] / sum(SPLIT)
  assert uniform_loss == pytest.approx(-np.log(fraction).mean(), rel=1e-5)
  assert right_loss < uniform_loss < wrong_loss


@pytest.mark.parametrize(
  "split, class_groups, match",
  [
    ((16, 4, 11), GROUPS, "sums to 31"),
    ((16, 4, 12, 1), GROUPS, "sums to 33"),
    (SPLIT, (0, 1, 3, 2, 2), "class_groups"),
    (SPLIT, (0, -1, 2, 2, 2), "class_groups"),
    ((28, 4), GROUPS, "class_groups"),  # group 2 does not exist with two groups
  ],
)
def test_query_distribution_rejects_bad_groups(split, class_groups, match):
  outputs = {"mask_logits": np.zeros((1, 2, 2, 32), np.float32)}
  batch = {"label": np.zeros((1, 2, 2), np.int32)}
  with pytest.raises(ValueError, match=match):
    mask_transformer.query_distribution(
      outputs=outputs, batch=batch, query_split=split, class_groups=class_groups
    )


# ----------------------------------------------------------------------------------------------
# Label down-sampling.


@pytest.mark.parametrize(
  "shape, spatial",
  [
    ((2, 8, 12), (4, 3)),  # even blocks 2 × 4: the lower-right of the four centre pixels
    ((1, 9, 6), (3, 2)),  # odd blocks 3 × 3: the exact centre
    ((2, 4, 8, 8), (2, 2, 4)),  # 3-D
    ((1, 8, 8), (1, 1)),
  ],
)
def test_downsample_labels_takes_block_centres(shape, spatial):
  rng = np.random.default_rng(2)
  label = rng.integers(0, 100, size=shape).astype(np.int32)
  image = np.zeros((*shape, 1), np.float32)
  out = mask_transformer.downsample_labels({"label": label, "image": image}, spatial)
  assert out["label"].shape == (shape[0], *spatial)
  np.testing.assert_array_equal(out["label"], _centre_sample(label, spatial))
  assert out["image"] is image  # other keys unchanged


def test_downsample_labels_identity_and_errors():
  label = np.arange(2 * 8 * 8).reshape(2, 8, 8)
  batch = {"label": label}
  assert mask_transformer.downsample_labels(batch, (8, 8)) is batch
  # Hand-checked 2× case: rows/columns 1, 3, 5, 7.
  np.testing.assert_array_equal(
    mask_transformer.downsample_labels(batch, (4, 4))["label"], label[:, 1::2, 1::2]
  )
  for spatial in [(3, 8), (8, 5), (16, 16)]:
    with pytest.raises(ValueError, match="not a multiple"):
      mask_transformer.downsample_labels(batch, spatial)


# ----------------------------------------------------------------------------------------------
# Deep supervision with the smoke configuration's loss section.


def _layer(rng, batch, spatial, n=32, k=5, scale=2.0):
  return {
    "mask_logits": (rng.normal(size=(batch, *spatial, n)) * scale).astype(np.float32),
    "class_logits": (rng.normal(size=(batch, n, k)) * scale).astype(np.float32),
  }


def _smoke_loss_config(qd: bool = True):
  loss = maxquery_config.get_config("smoke").loss
  if not qd:  # the paper's "w/o L_qd" ablation, as a user would write it
    loss.query_distribution.weight = 0.0
  return loss


def test_deep_supervision_is_final_plus_weighted_aux_sum():
  loss_config = _smoke_loss_config()
  assert [name for name, _, _ in losses.active_terms(loss_config)] == [
    "cross_entropy",
    "query_distribution",
    "soft_dice",
  ]
  without_qd = _smoke_loss_config(qd=False)
  rng = np.random.default_rng(3)
  final = _layer(rng, 2, (8, 8))
  aux = (_layer(rng, 2, (2, 2)), _layer(rng, 2, (4, 4)))
  outputs = {**final, "aux": aux}
  label = rng.integers(0, 5, size=(2, 8, 8)).astype(np.int32)
  # Example 1 is evaluation padding: every layer (aux labels included) must ignore it.
  valid = np.array([1.0, 0.0], np.float32)
  batch = {"label": label, "valid": valid}
  aux_weight = 0.37

  # Reference inputs prepared in numpy: semantic log-probs and centre-sampled labels.
  def with_logits(layer):
    logits = _np_semantic_log_probs(layer["mask_logits"], layer["class_logits"])
    return {**layer, "logits": logits.astype(np.float32)}

  reference_layers = [(with_logits(final), batch)] + [
    (with_logits(a), {**batch, "label": _centre_sample(label, a["mask_logits"].shape[1:3])})
    for a in aux
  ]

  @jax.jit
  def run(outputs, batch, reference_layers):
    results = [
      mask_transformer.deep_supervision(cfg, outputs=outputs, batch=batch, aux_weight=aux_weight)
      for cfg in (loss_config, without_qd)
    ]
    sums = [losses.weighted_sum(loss_config, outputs=o, batch=b) for o, b in reference_layers]
    return results, sums

  results, sums = jax.device_get(run(outputs, batch, reference_layers))
  (total, metrics), (total_off, metrics_off) = results
  (final_sum, final_metrics), aux_sums = sums[0], [float(s[0]) for s in sums[1:]]
  expected = float(final_sum) + aux_weight * sum(aux_sums)
  assert float(total) == pytest.approx(expected, rel=1e-5)
  assert float(metrics["loss/aux"]) == pytest.approx(sum(aux_sums), rel=1e-5)
  # The metrics are the final layer's.
  for name, value in final_metrics.items():
    assert float(metrics[name]) == pytest.approx(float(value), rel=1e-5), name
  assert {"loss/cross_entropy", "loss/soft_dice", "loss/query_distribution"} <= set(metrics)
  # An independent check of one term: the final layer's QD loss.
  qd = [
    _np_qd(layer["mask_logits"], b["label"], SPLIT, GROUPS, valid) for layer, b in reference_layers
  ]
  assert float(metrics["loss/query_distribution"]) == pytest.approx(qd[0], rel=1e-5)
  # ... and of the semantic CE: mean of −log seg[label] over the valid example.
  log_probs = reference_layers[0][0]["logits"].astype(np.float64)
  ce = -np.take_along_axis(log_probs, label[..., None], axis=-1)[0].mean()
  assert float(metrics["loss/cross_entropy"]) == pytest.approx(ce, rel=1e-5)

  # Switching the QD term off (weight 0) removes exactly its contributions.
  assert "loss/query_distribution" not in metrics_off and "qd_loss" not in metrics_off
  assert {"loss/cross_entropy", "loss/soft_dice", "loss/aux"} <= set(metrics_off)
  assert float(total) - float(total_off) == pytest.approx(
    qd[0] + aux_weight * sum(qd[1:]), rel=1e-4
  )
