"""OSCARS's quadruplet loss and the five metric-learning baselines.

Per-anchor values are checked against hand-computed cases here (CI) and, where
pytorch-metric-learning is installed, against its implementations (same definitions, no
reduction)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsup_jax.losses import metric_learning as ml


def _data(seed=0, b=12, d=5, classes=3):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(b, d)).astype(np.float32), rng.integers(0, classes, b)


def test_quadruplet_partners_obey_the_sampling_rules():
  x, labels = _data(b=40, classes=3)
  bins = np.random.default_rng(1).integers(0, 3, 40)
  loss, used, partners = ml.oscars_quadruplet_per_anchor(
    jnp.asarray(x), jnp.asarray(labels), jnp.asarray(bins), jax.random.key(0)
  )
  p, intra, inter = (np.asarray(partners[k]) for k in ("positive", "intra", "inter"))
  has_p = np.asarray(partners["has_positive"])
  for a in np.flatnonzero(np.asarray(used)):
    assert labels[intra[a]] == labels[a] and bins[intra[a]] != bins[a]
    assert labels[inter[a]] != labels[a]
    if has_p[a]:
      assert p[a] != a and labels[p[a]] == labels[a] and bins[p[a]] == bins[a]
    else:
      assert p[a] == a
  # Hand-computed value of anchor a from its partners.
  a = int(np.flatnonzero(np.asarray(used))[0])
  d = lambda i, j: np.linalg.norm(x[i] - x[j])  # noqa: E731
  expected = 0.05 * max(d(a, p[a]) - d(a, intra[a]) + 1, 0) + 0.95 * max(
    d(a, intra[a]) - d(a, inter[a]) + 2, 0
  )
  np.testing.assert_allclose(float(loss[a]), expected, rtol=1e-5)


def test_quadruplet_hand_case_and_padding():
  # Class 0: a at 0, same-bin p at 0.5, other-bin n_intra at 2; class 1 at 9. Only one choice
  # each for anchor 0: λ·[0.5 − 2 + 1]_+ + (1 − λ)·[2 − 9 + 2]_+ = 0.
  x = jnp.array([[0.0], [0.5], [2.0], [9.0], [100.0]])
  labels, bins = jnp.array([0, 0, 0, 1, 1]), jnp.array([0, 0, 1, 0, 0])
  valid = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0])  # the far point is padding: never a partner
  loss, used, partners = ml.oscars_quadruplet_per_anchor(x, labels, bins, jax.random.key(3), valid)
  assert int(partners["inter"][0]) == 3 and float(loss[0]) == 0.0
  # Anchor 2 (bin 1, alone in its bin → p = a): λ·[0 − d(2, n_intra) + 1]_+ + …
  assert int(partners["positive"][2]) == 2
  n_intra = int(partners["intra"][2])
  expected = 0.05 * max(0 - abs(2.0 - float(x[n_intra, 0])) + 1, 0) + 0.95 * max(
    abs(2.0 - float(x[n_intra, 0])) - 7.0 + 2, 0
  )
  np.testing.assert_allclose(float(loss[2]), expected, rtol=1e-6)
  assert not bool(used[3])  # class 1 has no other-bin image: skipped
  assert not bool(used[4])  # padding


def test_supcon_hand_case():
  # Two unit vectors of class 0 at 90°, one of class 1 opposite the first.
  x = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
  loss, used = ml.supcon_per_anchor(x, jnp.array([0, 0, 1]), temperature=1.0)
  # Anchor 0: its positive has s = 0, the negative s = −1: −log(e^0 / (e^0 + e^−1)).
  np.testing.assert_allclose(float(loss[0]), np.log(1 + np.exp(-1)), rtol=1e-6)
  assert list(np.asarray(used)) == [True, True, False]


def test_fastap_is_zero_when_positives_are_all_nearer_than_negatives():
  x = jnp.array([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]])
  loss, used = ml.fastap_per_anchor(x, jnp.array([0, 0, 1, 1]))
  np.testing.assert_allclose(np.asarray(loss), 0.0, atol=1e-6)
  assert np.all(np.asarray(used))


def test_every_term_has_finite_gradients_and_ignores_padding():
  x, labels = _data(b=8)
  bins = np.arange(8) % 2
  outputs = {"image_embedding": jnp.asarray(x), "sample_key": jax.random.key(0)}
  batch = {"class_id": jnp.asarray(labels), "bin": jnp.asarray(bins)}
  for name in ("oscars_quadruplet", "triplet", "supcon", "multi_similarity", "circle", "fastap"):
    fn = getattr(ml, name)
    grad = jax.grad(lambda e, fn=fn: fn(outputs={**outputs, "image_embedding": e}, batch=batch)[0])(
      outputs["image_embedding"]
    )
    assert np.all(np.isfinite(np.asarray(grad))), name
    if name in ("supcon", "multi_similarity", "circle", "fastap"):  # deterministic terms
      padded = {
        "class_id": jnp.concatenate([batch["class_id"], jnp.zeros(2, int)]),
        "valid": jnp.concatenate([jnp.ones(8), jnp.zeros(2)]),
      }
      big = jnp.concatenate([outputs["image_embedding"], 50 * jnp.ones((2, x.shape[1]))])
      a = fn(outputs={"image_embedding": outputs["image_embedding"]}, batch=batch)[0]
      b = fn(outputs={"image_embedding": big}, batch=padded)[0]
      np.testing.assert_allclose(float(a), float(b), rtol=1e-5, err_msg=name)


@pytest.fixture(scope="module")
def pml():
  torch = pytest.importorskip("torch")
  losses = pytest.importorskip("pytorch_metric_learning.losses")
  reducers = pytest.importorskip("pytorch_metric_learning.reducers")
  return torch, losses, reducers


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pytorch_metric_learning(pml, seed):
  torch, losses, reducers = pml
  x, labels = _data(seed, b=16, classes=4)
  none = reducers.DoNothingReducer()

  def per_element(loss):
    result = loss(torch.from_numpy(x), torch.from_numpy(labels))  # DoNothingReducer: the dict
    return result["loss"]["losses"].detach().numpy(), result["loss"]["indices"]

  # SupCon: per anchor.
  theirs, _ = per_element(losses.SupConLoss(temperature=0.1, reducer=none))
  ours, used = ml.supcon_per_anchor(jnp.asarray(x), jnp.asarray(labels), temperature=0.1)
  np.testing.assert_allclose(
    np.asarray(ours)[np.asarray(used)], theirs[np.asarray(used)], rtol=1e-4
  )
  # Multi-Similarity (its loss without the miner: our mining off).
  theirs = losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5)  # mean over anchors
  theirs = theirs(torch.from_numpy(x), torch.from_numpy(labels))
  ours, _ = ml.multi_similarity_per_anchor(jnp.asarray(x), jnp.asarray(labels), mining_epsilon=-1)
  np.testing.assert_allclose(float(np.mean(ours)), float(theirs), rtol=1e-4)
  # Circle: pml averages the non-zero per-anchor losses.
  theirs = losses.CircleLoss(m=0.4, gamma=80)(torch.from_numpy(x), torch.from_numpy(labels))
  ours, used = ml.circle_per_anchor(jnp.asarray(x), jnp.asarray(labels))
  ours = np.asarray(ours)[np.asarray(used)]
  np.testing.assert_allclose(float(np.mean(ours[ours > 0])), float(theirs), rtol=1e-4)
  # FastAP: per anchor with positives.
  theirs, index = per_element(losses.FastAPLoss(num_bins=10, reducer=none))
  ours, used = ml.fastap_per_anchor(jnp.asarray(x), jnp.asarray(labels))
  np.testing.assert_allclose(np.asarray(ours)[index.numpy()], theirs, rtol=1e-4, atol=1e-6)


def test_multi_similarity_mining_matches_the_pml_miner(pml):
  torch, losses, reducers = pml
  miners = pytest.importorskip("pytorch_metric_learning.miners")
  x, labels = _data(3, b=16, classes=4)
  emb, lab = torch.from_numpy(x), torch.from_numpy(labels)
  pairs = miners.MultiSimilarityMiner(epsilon=0.1)(emb, lab)
  theirs = losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5)(emb, lab, pairs)
  ours, _ = ml.multi_similarity_per_anchor(jnp.asarray(x), jnp.asarray(labels), mining_epsilon=0.1)
  np.testing.assert_allclose(float(np.mean(ours)), float(theirs), rtol=1e-4)
