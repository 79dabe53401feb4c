"""Tests of TEND's and CVAD's networks (mlsup_jax.nn.autoencoder, .vae, .cvae).

Full-size (spec) shapes and parameter counts use `jax.eval_shape`, which allocates nothing (the
public-code CVAD holds ≈ 0.7 B parameters at 256²). Everything that runs uses small widths.
Keys use the "rbg" PRNG: XLA compiles threefry-based initialisers very slowly on CPU.
"""

from __future__ import annotations

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import ndimage

from mlsup_jax.losses import anomaly
from mlsup_jax.nn import MODELS
from mlsup_jax.nn.autoencoder import AutoEncoder, ConvBlock, ConvEncoder, TendClassifier, activate
from mlsup_jax.nn.cvae import CascadeVAE, Discriminator
from mlsup_jax.nn.vae import VAE, GaussianLatent


def _key(seed: int) -> jax.Array:
  return jax.random.key(seed, impl="rbg")


def _count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _init(model, x, **kwargs):
  rngs = {"params": _key(0), "sample": _key(1)}
  return jax.jit(lambda x: model.init(rngs, x, train=False, **kwargs))(x)


def _shapes(model, x, **kwargs):
  """`(variables, outputs)` as ShapeDtypeStructs: nothing is allocated or compiled."""
  rngs = {"params": _key(0), "sample": _key(1)}
  variables = jax.eval_shape(lambda: model.init(rngs, x, train=False, **kwargs))
  outputs = jax.eval_shape(lambda v: model.apply(v, x, train=False, rngs=rngs, **kwargs), variables)
  return variables, outputs


def _images(batch: int, size: int, channels: int = 1, seed: int = 0) -> jax.Array:
  # numpy, not jax.random: every new shape would cost another XLA compile.
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.uniform(size=(batch, size, size, channels)), jnp.float32)


# ----------------------------------------------------------------------------------------------
# Shapes at the spec's sizes (256 → 8 → 256) and for 64² phantoms (64 → 2 → 64).


def test_conv_block_halves_and_transposed_block_doubles():
  x = jnp.zeros((2, 16, 12, 3))
  _, down = _shapes(ConvBlock(5), x)
  assert down.shape == (2, 8, 6, 5)
  _, up = _shapes(ConvBlock(5, transpose=True), x)
  assert up.shape == (2, 32, 24, 5)


@pytest.mark.parametrize("size, latent", [(256, 8), (64, 2)])
def test_autoencoder_and_vae_shapes(size, latent):
  x = jnp.zeros((2, size, size, 3))
  _, out = _shapes(AutoEncoder(), x)
  assert out["latent"].shape == (2, latent, latent, 256)
  assert out["reconstruction"].shape == x.shape
  assert out["reconstruction"].dtype == jnp.float32
  variables, out = _shapes(VAE(), x)
  assert out["mu"].shape == out["logvar"].shape == (2, 512)
  assert out["reconstruction"].shape == x.shape
  assert variables["params"]["latent"]["mu"]["kernel"].shape == (latent * latent * 256, 512)


@pytest.mark.parametrize("size", [256, 64])
def test_tend_classifier_and_discriminator_shapes(size):
  x = jnp.zeros((3, size, size, 1))
  variables, out = _shapes(TendClassifier(), x)
  assert out["features"].shape == (3, 512)
  assert out["logit"].shape == (3,)
  # The FC takes the real flatten size: 512 × 4 × 4 = 8192 at 256² (not Table 4.1's 2048).
  side = size // 64
  assert variables["params"]["features"]["kernel"].shape == (side * side * 512, 512)
  _, out = _shapes(TendClassifier(feature_dim=128), x)
  assert out["features"].shape == (3, 128)
  variables, logit = _shapes(Discriminator(), x)
  assert logit.shape == (3,)
  assert variables["params"]["hidden"]["kernel"].shape == ((size // 32) ** 2 * 256, 512)
  assert "bias" not in variables["params"]["hidden"]


@pytest.mark.parametrize("branch_encoder", ["conv", "fc"])
@pytest.mark.parametrize("size", [256, 64])
def test_cascade_vae_shapes_are_consistent(branch_encoder, size):
  x = jnp.zeros((2, size, size, 1))
  variables, out = _shapes(CascadeVAE(branch_encoder=branch_encoder), x, perturb=True)
  for key in ("reconstruction", "reconstruction_primary", "reconstruction_branch", "perturbed"):
    assert out[key].shape == x.shape, key
  assert out["mu1"].shape == out["logvar1"].shape == (2, 512)
  assert out["mu2"].shape == out["logvar2"].shape == (2, 2048)
  params = variables["params"]
  # E11 ends at h_e = [B, s/8, s/8, 64]; D11 ends at the same width, so concat has 128 channels.
  assert params["e11"]["block_2"]["conv"]["kernel"].shape == (4, 4, 32, 64)
  assert params["d11"]["block_1"]["conv"]["kernel"].shape == (4, 4, 128, 64)
  he = size // 8
  branch_in = he * he * 128 if branch_encoder == "fc" else (he // 2) ** 2 * 128
  assert params["latent2"]["mu"]["kernel"].shape == (branch_in, 2048)
  assert ("e2" in params) == (branch_encoder == "conv")
  # D2's input Dense reshapes to h_e's shape.
  assert params["d2_input"]["dense"]["kernel"].shape == (2048, he * he * 64)


@pytest.mark.parametrize(
  "model, shape",
  [
    (AutoEncoder(), (1, 48, 64, 1)),
    (TendClassifier(), (1, 32, 64, 1)),  # the head conv needs one more halving: 64
    (CascadeVAE(), (1, 64, 40, 1)),
    (ConvEncoder(), (64, 64, 1)),
  ],
)
def test_bad_input_shape_raises(model, shape):
  with pytest.raises(ValueError, match="must be multiples|expects"):
    _shapes(model, jnp.zeros(shape))


def test_unknown_options_raise():
  with pytest.raises(ValueError, match="branch_encoder"):
    _shapes(CascadeVAE(branch_encoder="mlp"), jnp.zeros((1, 64, 64, 1)))
  with pytest.raises(ValueError, match="activation"):
    activate(jnp.ones(3), "gelu")


# ----------------------------------------------------------------------------------------------
# Parameter counts at 256² (eval_shape: the fc variant would need ≈ 2.8 GB of fp32 weights).


def _conv(c_in, c_out, bias=False):
  return 16 * c_in * c_out + (c_out if bias else 0)


def _bn(c):
  return 2 * c


def _dense(n_in, n_out):
  return n_in * n_out + n_out


def _expected_cvae_count(branch_encoder: str, channels: int = 1) -> dict[str, int]:
  """Layer-by-layer count at 256² (base 16, K = 512); convs followed by BN have no bias."""
  counts = {
    "e11": _conv(channels, 16) + _bn(16) + _conv(16, 32) + _bn(32) + _conv(32, 64) + _bn(64),
    "e12": _conv(64, 128) + _bn(128) + _conv(128, 256) + _bn(256),
    "latent1": 2 * _dense(8 * 8 * 256, 512),
    "d1_input": _dense(512, 8 * 8 * 256),
    "d11": _conv(256, 128) + _bn(128) + _conv(128, 64) + _bn(64),
    "d12": _conv(64, 32) + _bn(32) + _conv(32, 16) + _bn(16) + _conv(16, channels, bias=True),
    "d2_input": _dense(2048, 32 * 32 * 64),
  }
  counts["d2"] = counts["d12"]
  if branch_encoder == "fc":
    counts["latent2"] = 2 * _dense(32 * 32 * 128, 2048)
  else:
    counts["e2"] = _conv(128, 128) + _bn(128)
    counts["latent2"] = 2 * _dense(16 * 16 * 128, 2048)
  return counts


@pytest.mark.parametrize("branch_encoder", ["fc", "conv"])
def test_cascade_vae_parameter_counts_at_256(branch_encoder):
  model = CascadeVAE(branch_encoder=branch_encoder)
  params = jax.eval_shape(
    lambda: model.init(
      {"params": _key(0), "sample": _key(1)}, jnp.zeros((1, 256, 256, 1)), train=False
    )
  )["params"]
  expected = _expected_cvae_count(branch_encoder)
  assert {name: _count(params[name]) for name in params} == expected
  total = _count(params)
  if branch_encoder == "fc":
    # Spec S6.3: μ2/log σ2² ≈ 537 M, fc2 ≈ 134 M, ≈ 0.7 B in total.
    assert _count(params["latent2"]) == pytest.approx(537e6, rel=0.01)
    assert _count(params["d2_input"]) == pytest.approx(134e6, rel=0.01)
    assert total == 697_777_442
    assert total == pytest.approx(0.7e9, rel=0.01)
  else:
    # Spec S6.3: the thesis's E2 conv brings μ2/log σ2² down to ≈ 134 M.
    assert _count(params["latent2"]) == pytest.approx(134e6, rel=0.01)
    assert total == 295_386_658


def test_tend_autoencoder_parameter_count():
  variables, _ = _shapes(AutoEncoder(), jnp.zeros((1, 256, 256, 1)))
  widths = [1, 16, 32, 64, 128, 256]
  encoder = sum(_conv(a, b) + _bn(b) for a, b in zip(widths[:-1], widths[1:], strict=True))
  decoder = sum(_conv(b, a) + _bn(a) for a, b in zip(widths[1:-1], widths[2:], strict=True))
  decoder += _conv(16, 1, bias=True)
  assert _count(variables["params"]["encoder"]) == encoder
  assert _count(variables["params"]["decoder"]) == decoder


# ----------------------------------------------------------------------------------------------
# Behaviour of small instances (shallow and narrow: XLA compile time dominates on CPU).

SMALL = {"base_width": 4, "depth": 3}  # 32² inputs → 4×4 latent maps
CVAE_SMALL = {"base_width": 4, "e11_depth": 2, "e12_depth": 1, "latent_dim": 8}


@pytest.fixture(scope="module")
def ae():
  model = AutoEncoder(**SMALL)
  return model, _init(model, _images(2, 32))


@pytest.fixture(scope="module")
def cvae():
  model = CascadeVAE(**CVAE_SMALL)
  return model, _init(model, _images(2, 32))


@pytest.fixture(scope="module")
def disc():
  model = Discriminator(hidden_dim=8, **SMALL)
  return model, _init(model, _images(2, 32))


def test_autoencoder_outputs_and_batchnorm_modes(ae):
  model, variables = ae
  x = _images(4, 32, seed=1) * 3.0 + 1.0  # far from the initial running stats
  conv = nn.Conv(4, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False)

  @jax.jit
  def run(variables, x):
    train_out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    eval_out = model.apply(variables, x, train=False)
    alone = model.apply(variables, x[:1], train=False)
    first_conv = conv.apply({"params": variables["params"]["encoder"]["block_0"]["conv"]}, x)
    return train_out, updates, eval_out, alone, first_conv

  train_out, updates, eval_out, alone, first_conv = run(variables, x)
  for out in (train_out, eval_out):
    np.testing.assert_allclose(
      out["reconstruction"], jax.nn.sigmoid(out["reconstruction_logits"]), rtol=1e-6
    )
    assert np.all((np.asarray(out["reconstruction"]) >= 0) & (out["reconstruction"] <= 1))
    assert out["latent"].shape == (4, 4, 4, 16)
  # Every BatchNorm's statistics move in training, with PyTorch's momentum 0.1.
  old = jax.tree.leaves(variables["batch_stats"])
  new = jax.tree.leaves(updates["batch_stats"])
  assert len(old) == len(new) == 2 * 5
  assert all(not np.allclose(a, b) for a, b in zip(old, new, strict=True))
  np.testing.assert_allclose(
    updates["batch_stats"]["encoder"]["block_0"]["norm"]["mean"],
    0.1 * np.mean(np.asarray(first_conv), axis=(0, 1, 2)),
    rtol=1e-4,
    atol=1e-6,
  )
  # Evaluation uses running statistics: an example's output does not depend on the batch.
  np.testing.assert_allclose(alone["reconstruction"][0], eval_out["reconstruction"][0], atol=1e-6)
  assert not np.allclose(train_out["reconstruction"], eval_out["reconstruction"])


def test_code_layout_without_batchnorm():
  model = AutoEncoder(use_norm=False, activation="leaky_relu")
  variables, out = _shapes(model, jnp.zeros((1, 64, 64, 1)))
  assert set(variables) == {"params"}
  assert "bias" in variables["params"]["encoder"]["block_0"]["conv"]
  assert out["reconstruction"].shape == (1, 64, 64, 1)
  np.testing.assert_allclose(
    activate(jnp.array([-1.0, 0.0, 2.0]), "leaky_relu"), [-0.2, 0.0, 2.0], rtol=1e-6
  )
  np.testing.assert_array_equal(activate(jnp.array([-1.0, 2.0]), "relu"), [0.0, 2.0])


def test_tend_classifier_loads_the_autoencoder_encoder_and_can_freeze_it(ae):
  ae_model, ae_vars = ae
  classifier = TendClassifier(feature_dim=16, **SMALL)
  frozen = classifier.clone(freeze_encoder=True)
  x = _images(4, 32, seed=2)
  cls_vars = _init(classifier, x)
  # Same tree, same shapes: stage-1 weights drop in unchanged.
  shapes = lambda tree: jax.tree.map(lambda a: a.shape, tree)
  assert shapes(cls_vars["params"]["encoder"]) == shapes(ae_vars["params"]["encoder"])
  assert shapes(cls_vars["batch_stats"]["encoder"]) == shapes(ae_vars["batch_stats"]["encoder"])
  loaded = {
    "params": {**cls_vars["params"], "encoder": ae_vars["params"]["encoder"]},
    "batch_stats": {**cls_vars["batch_stats"], "encoder": ae_vars["batch_stats"]["encoder"]},
  }
  labels = jnp.array([0.0, 0.0, 1.0, 1.0])

  def grads(model, variables):
    def loss(params):
      out, updates = model.apply(
        {"params": params, "batch_stats": variables["batch_stats"]},
        x,
        train=True,
        mutable=["batch_stats"],
      )
      return anomaly.binary_cross_entropy(out["logit"], labels), updates

    return jax.grad(loss, has_aux=True)(variables["params"])

  @jax.jit
  def run(loaded):
    out, state = classifier.apply(loaded, x, train=False, capture_intermediates=True)
    latent = ae_model.apply(ae_vars, x, train=False)["latent"]
    return (
      out,
      state["intermediates"]["encoder"]["__call__"][0],
      latent,
      {
        "trained": grads(classifier, loaded),
        "frozen": grads(frozen, loaded),
      },
    )

  out, encoded, latent, results = run(loaded)
  np.testing.assert_allclose(encoded, latent, atol=1e-6)
  assert out["features"].shape == (4, 16)
  assert out["logit"].shape == (4,)
  for name, (g, updates) in results.items():
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(g))
    assert float(jnp.sum(jnp.abs(g["features"]["kernel"]))) > 0
    encoder_grad = sum(float(jnp.sum(jnp.abs(leaf))) for leaf in jax.tree.leaves(g["encoder"]))
    stats_moved = not np.allclose(
      updates["batch_stats"]["encoder"]["block_0"]["norm"]["mean"],
      loaded["batch_stats"]["encoder"]["block_0"]["norm"]["mean"],
    )
    # A frozen encoder gets no gradient and keeps its running statistics.
    assert (encoder_grad > 0) == (name == "trained")
    assert stats_moved == (name == "trained")


def test_vae_is_deterministic_in_eval_and_samples_in_train():
  model = VAE(base_width=4, depth=2, latent_dim=8)
  x = _images(2, 32, seed=4)
  variables = _init(model, x)
  with pytest.raises(flax.errors.InvalidRngError):
    jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]), variables)

  @jax.jit
  def run(v, key):
    train = model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"sample": key})[0]
    return train, model.apply(v, x, train=False)

  a, eval_out = run(variables, _key(5))
  b, _ = run(variables, _key(6))
  a_again, eval_again = run(variables, _key(5))
  np.testing.assert_array_equal(eval_out["z"], eval_out["mu"])
  np.testing.assert_array_equal(eval_out["reconstruction"], eval_again["reconstruction"])
  assert eval_out["reconstruction"].shape == x.shape
  np.testing.assert_array_equal(a["z"], a_again["z"])
  assert not np.allclose(a["z"], b["z"])
  assert not np.allclose(a["reconstruction"], b["reconstruction"])
  # z − μ = ε·σ: standardised noise of unit scale.
  eps = (a["z"] - a["mu"]) / jnp.exp(0.5 * a["logvar"])
  assert 0.5 < float(jnp.std(eps)) < 1.5


def test_cascade_vae_outputs_and_perturbation(cvae):
  model, variables = cvae
  x = _images(3, 32, seed=7)
  rngs = {"sample": _key(8)}

  @jax.jit
  def run(variables):
    plain = model.apply(variables, x, train=False)
    perturbed = model.apply(variables, x, train=False, perturb=True, rngs=rngs)
    unperturbed = model.clone(perturb_scale=0.0).apply(
      variables, x, train=False, perturb=True, rngs=rngs
    )
    return plain, perturbed, unperturbed

  plain, perturbed, unperturbed = run(variables)
  np.testing.assert_allclose(
    plain["reconstruction"],
    0.5 * (plain["reconstruction_primary"] + plain["reconstruction_branch"]),
    rtol=1e-6,
  )
  assert np.all((np.asarray(plain["reconstruction"]) >= 0) & (plain["reconstruction"] <= 1))
  assert plain["mu2"].shape == (3, 32)  # 4 × latent_dim
  assert "perturbed" not in plain
  # Evaluation decodes z = μ: the same inputs give the same reconstruction.
  np.testing.assert_array_equal(perturbed["reconstruction"], plain["reconstruction"])
  # s = 0 decodes μ itself; s > 0 moves I″ away from I′ (a "minor disturbance").
  np.testing.assert_allclose(unperturbed["perturbed"], plain["reconstruction"], atol=1e-6)
  gap = np.abs(np.asarray(perturbed["perturbed"]) - np.asarray(plain["reconstruction"]))
  assert 0 < gap.mean() < 0.1


def test_cascade_vae_gradients_are_finite(cvae):
  model, variables = cvae
  x = _images(2, 32, seed=9)

  @jax.jit
  def value_and_grad(variables):
    def loss(params):
      out, _ = model.apply(
        {"params": params, "batch_stats": variables["batch_stats"]},
        x,
        train=True,
        mutable=["batch_stats"],
        rngs={"sample": _key(10)},
      )
      return anomaly.cvae_loss(outputs=out, batch={"image": x})[0]

    return jax.value_and_grad(loss)(variables["params"])

  value, g = value_and_grad(variables)
  assert np.isfinite(float(value))
  leaves = jax.tree.leaves(g)
  assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
  # Both VAEs learn: every weight receives some gradient.
  assert all(float(jnp.max(jnp.abs(leaf))) > 0 for leaf in leaves)


def test_cascade_vae_fc_branch_shares_everything_but_the_branch_latent(cvae):
  model, variables = cvae
  fc_model = model.clone(branch_encoder="fc")
  x = _images(2, 32, seed=13)
  shapes = jax.eval_shape(lambda: fc_model.init(_key(0), x, train=False))
  # The public code's branch drops E2 and flattens concat(h_d, h_e) straight into μ2/log σ2².
  assert set(shapes["params"]) == set(variables["params"]) - {"e2"}
  assert shapes["params"]["latent2"]["mu"]["kernel"].shape == (8 * 8 * 16, 32)
  latent2 = jax.jit(lambda f: GaussianLatent(32).init(_key(1), f, train=False))(
    jnp.zeros((1, 8 * 8 * 16))
  )
  params = {k: v for k, v in variables["params"].items() if k != "e2"}
  params["latent2"] = latent2["params"]
  batch_stats = {k: v for k, v in variables["batch_stats"].items() if k != "e2"}
  out, _ = jax.jit(
    lambda v: fc_model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"sample": _key(2)})
  )({"params": params, "batch_stats": batch_stats})
  for value in out.values():
    assert np.all(np.isfinite(np.asarray(value)))
  assert out["reconstruction"].shape == x.shape
  assert out["mu2"].shape == (2, 32)


def test_discriminator_hidden_batchnorm_uses_the_authors_momentum(disc):
  model, variables = disc
  x = _images(4, 32, seed=11)
  logit, state = jax.jit(
    lambda v: model.apply(
      v, x, train=True, mutable=["batch_stats", "intermediates"], capture_intermediates=True
    )
  )(variables)
  assert logit.shape == (4,)
  hidden = state["intermediates"]["hidden"]["__call__"][0]
  # PyTorch BatchNorm1d(momentum=0.9): the running mean takes 0.9 of the batch mean at once.
  np.testing.assert_allclose(
    state["batch_stats"]["hidden_norm"]["mean"], 0.9 * jnp.mean(hidden, axis=0), rtol=1e-4
  )


def test_bfloat16_compute_keeps_float32_params_and_outputs(cvae):
  x = _images(2, 32, seed=12)
  for model in (AutoEncoder(**SMALL), TendClassifier(**SMALL), Discriminator(**SMALL)):
    variables, outputs = _shapes(model.clone(dtype=jnp.bfloat16), x)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    assert {leaf.dtype for leaf in jax.tree.leaves(outputs)} == {jnp.dtype(jnp.float32)}
  # Numerics on the most involved model (its latent statistics are cast back to float32).
  model, variables = cvae
  bf16 = model.clone(dtype=jnp.bfloat16)
  out32, out16 = jax.jit(lambda v: (model.apply(v, x, train=False), bf16.apply(v, x, train=False)))(
    variables
  )
  for key, value in out16.items():
    assert value.dtype == jnp.float32, key
    assert np.all(np.isfinite(np.asarray(value))), key
  # bf16 keeps ~3 significant digits.
  np.testing.assert_allclose(out16["reconstruction"], out32["reconstruction"], atol=0.02)
  np.testing.assert_allclose(out16["mu1"], out32["mu1"], atol=0.05)


def test_models_are_registered():
  assert MODELS.get("autoencoder") is AutoEncoder
  assert MODELS.get("tend_classifier") is TendClassifier
  assert MODELS.get("vae") is VAE
  assert MODELS.get("cascade_vae") is CascadeVAE
  assert MODELS.get("discriminator") is Discriminator


# ----------------------------------------------------------------------------------------------
# A tiny learning check.


def test_autoencoder_learns_to_reconstruct_smooth_images(ae):
  model, variables = ae
  noise = np.random.default_rng(0).normal(size=(32, 32, 32, 1))
  images = ndimage.gaussian_filter(noise, sigma=(0, 3, 3, 0), mode="wrap")
  images = (images - images.min()) / (images.max() - images.min())
  x = jnp.asarray(images, jnp.float32)
  tx = optax.adam(1e-2)

  def mse(params, stats, train):
    out = model.apply(
      {"params": params, "batch_stats": stats}, x, train=train, mutable=["batch_stats"]
    )
    return anomaly.reconstruction_mse(outputs=out[0], batch={"image": x})[0], out[1]

  @jax.jit
  def fit(params, stats):
    def step(carry, _):
      params, stats, opt_state = carry
      (loss, updates), grads = jax.value_and_grad(mse, has_aux=True)(params, stats, True)
      changes, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, changes), updates["batch_stats"], opt_state), loss

    before = mse(params, stats, False)[0]
    (params, stats, _), _ = jax.lax.scan(step, (params, stats, tx.init(params)), length=100)
    return before, mse(params, stats, False)[0]

  before, after = fit(variables["params"], variables["batch_stats"])
  assert float(after) < float(before) / 5, (before, after)
