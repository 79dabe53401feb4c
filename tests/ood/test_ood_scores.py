"""Per-pixel OOD scores on hand-made logits, MaxQuery variants, and the SML accumulator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from mlsup_jax.ood import (
  LEVELS,
  PIXEL_SCORES,
  SOFTMAXES,
  SmlStatistics,
  category_logits,
  energy,
  max_logit,
  maxquery,
  msp,
  predictive_entropy,
  semantic_probabilities,
  standardized_max_logit,
)

# Eager jax ops each compile (and hit the disk cache) on this CPU, so every test jits one
# function computing everything it needs and checks it against numpy/scipy references.


def _np_softmax(x):
  return special.softmax(np.asarray(x, np.float64), axis=-1)


LOGITS = np.array([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 0.0]], np.float32)


def test_logit_scores_by_hand_and_jit():
  out = jax.jit(
    lambda x: {
      **{name: fn(x) for name, fn in PIXEL_SCORES.items()},
      "energy_t2": energy(x, temperature=2.0),
      "msp_confident": msp(jnp.array([70.0, 0.0, 0.0])),
    }
  )(LOGITS)
  np.testing.assert_allclose(out["msp"], 1 - _np_softmax(LOGITS).max(-1), rtol=1e-5)
  np.testing.assert_allclose(out["max_logit"], [-10.0, -1.0, -2.0])
  np.testing.assert_allclose(out["energy"], -special.logsumexp(LOGITS, axis=-1), rtol=1e-6)
  np.testing.assert_allclose(
    out["energy_t2"], -2 * special.logsumexp(LOGITS / 2, axis=-1), rtol=1e-6
  )
  # 1 - max prob ~ 2e-30 would round to 0 with a plain 1 - softmax.
  assert float(out["msp_confident"]) == pytest.approx(2 * np.exp(-70.0), rel=1e-5)
  # The uniform pixel is more OOD than the confident one for every score.
  for name in PIXEL_SCORES:
    assert out[name][1] > out[name][0], name
  assert set(PIXEL_SCORES) == {"msp", "max_logit", "energy"}


def test_shapes_any_leading_axes():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 7, 4)).astype(np.float32)
  probs = _np_softmax(rng.normal(size=(6, 2, 5, 4))).astype(np.float32)
  mean, std = np.arange(4.0), np.full(4, 2.0)
  out = jax.jit(
    lambda x, p: (
      msp(x),
      max_logit(x),
      energy(x),
      standardized_max_logit(x, mean, std),
      predictive_entropy(p),
    )
  )(logits, probs)
  assert [o.shape for o in out] == [(2, 5, 7)] * 4 + [(2, 5)]
  c = logits.argmax(-1)
  np.testing.assert_allclose(out[3], -(logits.max(-1) - mean[c]) / std[c], rtol=1e-5)
  p = probs.mean(0)
  np.testing.assert_allclose(out[4], -(p * np.log(p)).sum(-1), rtol=1e-5)


def test_predictive_entropy_and_sml_by_hand():
  probs = np.array(
    [
      [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]],
      [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]],
    ]
  )  # [T=2, 3 pixels, K=3]: disagreeing, agreeing (zeros are fine), equal passes
  logits = np.array([[5.0, 1.0], [0.0, 3.0]])
  ent, sml = jax.jit(
    lambda p, x: (predictive_entropy(p), standardized_max_logit(x, [4.0, 1.0], [0.5, 2.0]))
  )(probs, logits)
  expected = [np.log(2), 0.0, -(0.5 * np.log(0.25) + 0.5 * np.log(0.5))]
  np.testing.assert_allclose(ent, expected, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(sml, [-2.0, -1.0])


def _query_inputs(seed=0, b=2, h=3, w=4, n=5, k=3):
  rng = np.random.default_rng(seed)
  a = 3 * rng.normal(size=(b, h, w, n))
  cls = 2 * rng.normal(size=(b, n, k))
  return a.astype(np.float32), cls.astype(np.float32)


@jax.jit
def _all_variants(a, cls):
  out = {f"{lv}/{sm}": maxquery(a, cls, lv, sm) for lv in LEVELS for sm in SOFTMAXES}
  out["seg"] = semantic_probabilities(a, cls)
  out["z"] = category_logits(a, cls)
  return out


def test_maxquery_query_level_by_hand():
  a = np.array([[[[2.0, -1.0, 0.0]], [[-3.0, -3.0, -3.0]]]], np.float32)  # [B=1, 2, 1, N=3]
  out = jax.jit(lambda a: (maxquery(a), maxquery(a, level="query", softmax="post")))(a)
  np.testing.assert_allclose(out[0], [[[-2.0], [3.0]]])
  np.testing.assert_allclose(out[1], -_np_softmax(a).max(-1), rtol=1e-6)
  np.testing.assert_allclose(out[1][0, 1], [-1 / 3], rtol=1e-6)  # evenly split = most OOD


def test_maxquery_variants_against_numpy():
  a, cls = _query_inputs()
  out = _all_variants(a, cls)
  assert all(out[f"{lv}/{sm}"].shape == (2, 3, 4) for lv in LEVELS for sm in SOFTMAXES)
  p, q = _np_softmax(a), _np_softmax(cls)
  seg = np.stack([p[i] @ q[i] for i in range(2)])  # MaskFormer semantic inference, [B,H,W,K]
  np.testing.assert_allclose(out["seg"], seg, rtol=1e-5)
  np.testing.assert_allclose(out["seg"].sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(out["query/pre"], -a.max(-1))
  np.testing.assert_allclose(out["query/post"], -p.max(-1), rtol=1e-5)
  # category/post is the MSP of the semantic probabilities, shifted by the constant 1.
  np.testing.assert_allclose(out["category/post"] + 1.0, 1.0 - seg.max(-1), atol=1e-6)
  # category/pre logits: the direct [B, *S, N, K] logsumexp; their softmax over k is seg.
  log_q = np.log(q)
  direct = special.logsumexp(a[..., :, None] + log_q[:, None, None], axis=-2)
  np.testing.assert_allclose(out["z"], direct, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(_np_softmax(out["z"]), seg, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["category/pre"], -direct.max(-1), rtol=1e-5, atol=1e-5)


def test_category_pre_reduces_to_query_pre_with_one_hot_queries():
  # One query per class, one-hot class distributions -> category logits are the affinities.
  a, _ = _query_inputs(n=3)
  cls = np.repeat(30.0 * np.eye(3, dtype=np.float32)[None], 2, axis=0)  # [B, N=K=3, K]
  out = _all_variants(a, cls)
  np.testing.assert_allclose(out["z"], a, atol=1e-4)
  np.testing.assert_allclose(out["category/pre"], out["query/pre"], atol=1e-4)


def test_maxquery_errors():
  a, cls = _query_inputs()
  with pytest.raises(ValueError, match="level"):
    maxquery(a, cls, level="pixel")
  with pytest.raises(ValueError, match="softmax"):
    maxquery(a, cls, softmax="mid")
  with pytest.raises(ValueError, match="class_logits"):
    maxquery(a, None, level="category")
  with pytest.raises(ValueError, match="must be"):
    maxquery(a, cls[:, :4], level="category")
  with pytest.raises(ValueError, match="must be"):
    maxquery(a, cls[0], level="category")


def test_sml_statistics_match_numpy():
  rng = np.random.default_rng(0)
  k = 4
  stats = SmlStatistics(k)
  xs, cs = [], []
  for _ in range(5):
    # Large offset checks the update does not lose precision (mean >> std).
    x = 1e4 + rng.normal(size=(2, 6, 7))
    c = rng.choice(3, size=(2, 6, 7))  # class 3 is never predicted
    x = x.astype(np.float32)
    stats.update(jnp.asarray(x), c)  # jax arrays are accepted
    xs.append(x.astype(np.float64).ravel())
    cs.append(c.ravel())
  x, c = np.concatenate(xs), np.concatenate(cs)
  mean, std = stats.finalize()
  for j in range(3):
    np.testing.assert_allclose(mean[j], x[c == j].mean(), rtol=1e-12)
    np.testing.assert_allclose(std[j], x[c == j].std(), rtol=1e-8)
  np.testing.assert_allclose(mean[3], x.mean(), rtol=1e-12)  # global fallback
  np.testing.assert_allclose(std[3], x.std(), rtol=1e-8)
  # min_count moves rare classes to the global statistics.
  mean_mc, _ = stats.finalize(min_count=int(np.bincount(c).max()) + 1)
  np.testing.assert_allclose(mean_mc, x.mean(), rtol=1e-12)


def test_sml_statistics_edge_cases():
  stats = SmlStatistics(2)
  with pytest.raises(ValueError, match="before any update"):
    stats.finalize()
  stats.update(np.array([3.0]), np.array([0]))
  mean, std = stats.finalize()
  assert mean[0] == 3.0 and std[0] == 1e-6  # one pixel: floored std
  with pytest.raises(ValueError, match="outside"):
    stats.update(np.array([1.0]), np.array([2]))
  with pytest.raises(ValueError, match="integer"):
    stats.update(np.array([1.0]), np.array([0.0]))
  with pytest.raises(ValueError, match="non-finite"):
    stats.update(np.array([np.nan]), np.array([0]))
