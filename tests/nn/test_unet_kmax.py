"""Tests of the U-Net backbone and the kMaX mask transformer (mlsup_jax.nn.unet, mlsup_jax.nn.kmax).

Shapes are checked with `jax.eval_shape` (no compilation); numerical properties run one jitted
function per test and compare with numpy references.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from mlsup_jax.nn.kmax import KMaX, KMaXLayer, semantic_log_probs
from mlsup_jax.nn.unet import UNet, UNetBackbone

BN_EPS = 1e-3  # kmax._batch_norm

# A tiny kMaX: 3 backbone levels, decoder blocks (1, 2) at the two coarsest scales.
SMALL_KMAX = {
  "num_classes": 3,
  "num_queries": 6,
  "backbone_features": (4, 8, 16),
  "hidden_dim": 16,
  "mask_dim": 8,
  "num_heads": 2,
  "ffn_dim": 16,
  "blocks_per_scale": (1, 2),
  "pixel_head_kernel": 1,
}


def _key(seed: int) -> jax.Array:
  """An RBG key: compiling threefry initialisers costs ~0.4 s per parameter on this CPU."""
  return jax.random.key(seed, impl="unsafe_rbg")


def _random_variables(model, rng, *args, **kwargs):
  """Variables of `model.init(...)`'s structure filled with host random numbers (no compile).

  1-D leaves (norm scales/biases, BN statistics) are drawn around 1, so variances stay positive.
  """
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *args, **kwargs))
  return jax.tree.map(
    lambda a: (rng.normal(size=a.shape) * (0.2 if a.ndim == 1 else 0.5) + (a.ndim == 1)).astype(
      np.float32
    ),
    shapes,
  )


def _np_gelu(x):
  """Flax's default (tanh-approximate) GELU."""
  x = np.asarray(x, np.float64)
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def _shapes(tree):
  return jax.tree.map(lambda a: tuple(a.shape), tree)


# ----------------------------------------------------------------------------------------------
# U-Net.


@pytest.mark.parametrize(
  "spatial, expected",
  [
    ((16, 12), [(4, 3), (8, 6), (16, 12)]),
    ((8, 4, 8), [(2, 1, 2), (4, 2, 4), (8, 4, 8)]),
  ],
)
def test_unet_backbone_and_classifier_shapes(spatial, expected):
  dims = len(spatial)
  x = jnp.zeros((2, *spatial, 2))
  backbone = UNetBackbone(features=(4, 8, 16), spatial_dims=dims)
  outputs, _ = jax.eval_shape(lambda: backbone.init_with_output(jax.random.key(0), x, train=False))
  # Coarsest first: the bottleneck, then every decoder level up to full resolution.
  assert [o.shape for o in outputs] == [
    (2, *s, c) for s, c in zip(expected, (16, 8, 4), strict=True)
  ]
  unet = UNet(num_classes=3, features=(4, 8, 16), spatial_dims=dims)
  logits, _ = jax.eval_shape(lambda: unet.init_with_output(jax.random.key(0), x, train=False))
  assert logits.shape == (2, *spatial, 3)
  assert logits.dtype == jnp.float32
  # bf16 compute still returns float32 logits and float32 parameters.
  unet16 = UNet(num_classes=3, features=(4, 8, 16), spatial_dims=dims, dtype=jnp.bfloat16)
  logits, variables = jax.eval_shape(
    lambda: unet16.init_with_output(jax.random.key(0), x, train=False)
  )
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  assert logits.dtype == jnp.float32


@pytest.mark.parametrize(
  "spatial_dims, shape, match",
  [
    (2, (1, 8, 8, 8, 1), "rank 4"),  # a volume given to a 2-D U-Net
    (2, (8, 8, 1), "rank 4"),  # no batch axis
    (3, (1, 8, 8, 1), "rank 5"),  # a slice given to a 3-D U-Net
    (2, (1, 18, 16, 1), "multiple of 4"),
    (2, (1, 16, 10, 1), "multiple of 4"),
    (3, (1, 6, 8, 8, 1), "multiple of 4"),
  ],
)
def test_unet_rejects_bad_inputs(spatial_dims, shape, match):
  model = UNet(num_classes=2, features=(4, 8, 16), spatial_dims=spatial_dims)
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


def test_unet_examples_are_independent_and_dropout_is_stochastic():
  """Instance norm: an example's logits do not depend on the rest of the batch."""
  model = UNet(num_classes=2, features=(4, 8), dropout_rate=0.5)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 8, 8, 1)).astype(np.float32)
  mixed = x.copy()
  mixed[1:] = rng.normal(size=(2, 8, 8, 1)) * 5.0 + 3.0
  variables = _random_variables(model, rng, x, train=False)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  apply_dropout = jax.jit(lambda v, x, key: model.apply(v, x, train=True, rngs={"dropout": key}))
  det, det_mixed = np.asarray(apply(variables, x)), np.asarray(apply(variables, mixed))
  np.testing.assert_allclose(det[0], det_mixed[0], rtol=1e-5, atol=1e-5)
  assert not np.allclose(det[1], det_mixed[1])
  assert np.all(np.isfinite(det))
  drop1, drop2 = (np.asarray(apply_dropout(variables, x, _key(s))) for s in (1, 2))
  assert not np.allclose(drop1, drop2)
  assert not np.allclose(drop1, det)


# ----------------------------------------------------------------------------------------------
# kMaX: shapes and configuration errors.


@pytest.mark.parametrize(
  "spatial, aux_spatial",
  [
    ((16, 16), [(4, 4), (8, 8), (8, 8)]),
    ((8, 8, 8), [(2, 2, 2), (4, 4, 4), (4, 4, 4)]),
  ],
)
def test_kmax_output_shapes(spatial, aux_spatial):
  model = KMaX(**SMALL_KMAX, spatial_dims=len(spatial))
  x = jnp.zeros((2, *spatial, 1))
  outputs, variables = jax.eval_shape(
    lambda: model.init_with_output(jax.random.key(0), x, train=False)
  )
  assert set(variables) == {"params", "batch_stats"}
  assert variables["params"]["cluster_centres"].shape == (6, 16)
  # Every predictor (3 decoder layers + the final one) has one single-channel affinity BN.
  one_channel = [
    jax.tree_util.keystr(path)
    for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"])
    if leaf.shape == (1,) and jax.tree_util.keystr(path).endswith("['scale']")
  ]
  assert len(one_channel) == sum(SMALL_KMAX["blocks_per_scale"]) + 1
  assert all("KMaXPredictor" in p for p in one_channel)
  assert outputs["mask_logits"].shape == (2, *spatial, 6)
  assert outputs["class_logits"].shape == (2, 6, 3)
  assert outputs["mask_logits"].dtype == outputs["class_logits"].dtype == jnp.float32
  # One entry per decoder block (1 at the bottleneck, 2 at the next scale), coarse → fine.
  assert len(outputs["aux"]) == sum(SMALL_KMAX["blocks_per_scale"])
  assert [a["mask_logits"].shape for a in outputs["aux"]] == [(2, *s, 6) for s in aux_spatial]
  assert all(a["class_logits"].shape == (2, 6, 3) for a in outputs["aux"])


def test_kmax_with_depthwise_pixel_head_and_default_blocks_shapes():
  """kMaX's 5×5 depth-wise pixel head and a 4-level backbone with blocks (1, 1, 1)."""
  model = KMaX(num_classes=2, num_queries=4, hidden_dim=8, mask_dim=8, ffn_dim=8, num_heads=2)
  x = jnp.zeros((1, 16, 16, 1))
  outputs, variables = jax.eval_shape(
    lambda: model.init_with_output(jax.random.key(0), x, train=False)
  )
  assert outputs["mask_logits"].shape == (1, 16, 16, 4)
  assert [a["mask_logits"].shape[1:3] for a in outputs["aux"]] == [(2, 2), (4, 4), (8, 8)]
  # Every predictor holds one depth-wise 5×5 conv (final + 3 decoder layers).
  kernels = [
    leaf.shape
    for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"])
    if "KMaXPredictor" in jax.tree_util.keystr(path) and "Conv" in jax.tree_util.keystr(path)
  ]
  assert kernels and all(k[:2] == (5, 5) and k[2] == 1 for k in kernels)
  assert len(kernels) == 4


@pytest.mark.parametrize("blocks", [(1, 1, 1), (1, 1, 1, 1)])
def test_kmax_too_many_decoder_scales_raises(blocks):
  model = KMaX(**{**SMALL_KMAX, "blocks_per_scale": blocks})
  with pytest.raises(ValueError, match="blocks_per_scale"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 1)), train=False))


def test_bfloat16_compute_reaches_every_dense_layer():
  """`KMaX(dtype=bfloat16)`: every dense/conv layer computes in bf16 (the attribute's contract)."""
  model = KMaX(**SMALL_KMAX, dtype=jnp.bfloat16)
  dtypes = {}

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    layers = (nn.Dense, nn.Conv, nn.ConvTranspose, nn.MultiHeadDotProductAttention)
    if context.method_name == "__call__" and isinstance(context.module, layers):
      dtypes["/".join(context.module.path)] = out.dtype
    return out

  with nn.intercept_methods(interceptor):
    outputs, variables = jax.eval_shape(
      lambda: model.init_with_output(jax.random.key(0), jnp.zeros((1, 16, 16, 1)), train=False)
    )
  # What already holds: float32 parameters and float32 affinities / class logits.
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  assert outputs["mask_logits"].dtype == outputs["class_logits"].dtype == jnp.float32
  assert len(dtypes) > 40
  float32_layers = sorted(path for path, dtype in dtypes.items() if dtype != jnp.bfloat16)
  # Fails with ['KMaXLayer_0/KMaXPredictor_0/Dense_0', 'KMaXLayer_0/KMaXPredictor_0/Dense_1', …]
  assert float32_layers == []


# ----------------------------------------------------------------------------------------------
# kMaX: one decoder layer, probed through `nn.intercept_methods`.


LAYER = KMaXLayer(mask_dim=8, num_classes=3, spatial_dims=2, num_heads=2, ffn_dim=16)


def _probe_layer(variables, queries, pixel):
  """Applies LAYER in train mode; records the inputs/outputs of its direct Dense/BN children."""
  calls = []

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if context.method_name == "__call__" and len(module.path) == 1:
      calls.append((type(module).__name__, args[0], out))
    if type(module).__name__ == "BatchNorm" and args[0].shape[-1] == 1:
      calls.append(("affinity_bn", args[0], out))
    return out

  with nn.intercept_methods(interceptor):
    (new_queries, (mask_logits, class_logits)), _ = LAYER.apply(
      variables, queries, pixel, train=True, mutable=["batch_stats"]
    )
  value = next(out for kind, _, out in calls if kind == "Dense")  # the first Dense: values
  delta = next(inp for kind, inp, _ in calls if kind == "BatchNorm")  # the first BN: Σ update
  affinity_bn = [(inp, out) for kind, inp, out in calls if kind == "affinity_bn"]
  return new_queries, mask_logits, value, delta, affinity_bn


def _fresh_layer_variables(queries, pixel, rng):
  """LAYER's variables: the real initial values of every BatchNorm, random dense kernels.

  Only the BatchNorm leaves are taken from `LAYER.init`, so XLA drops the (slow to compile)
  random initialisers of the kernels; those are drawn on the host instead. The properties
  tested (zero-initialised residual branches, the 0.1 affinity scale) hold for any kernels.
  """

  def is_norm(path) -> bool:
    return "BatchNorm" in jax.tree_util.keystr(path)

  norm_leaves = jax.jit(
    lambda q, p: [
      leaf
      for path, leaf in jax.tree_util.tree_leaves_with_path(LAYER.init(_key(0), q, p, train=False))
      if is_norm(path)
    ]
  )(queries, pixel)
  shapes = jax.eval_shape(lambda: LAYER.init(jax.random.key(0), queries, pixel, train=False))
  norm_iter = iter(norm_leaves)
  return jax.tree_util.tree_map_with_path(
    lambda path, a: (
      np.asarray(next(norm_iter))
      if is_norm(path)
      else (rng.normal(size=a.shape) / np.sqrt(a.shape[-2] if a.ndim > 1 else 1)).astype(np.float32)
    ),
    shapes,
  )


@pytest.fixture(scope="module")
def layer_probe():
  rng = np.random.default_rng(0)
  queries = rng.normal(size=(2, 6, 16)).astype(np.float32)
  pixel = rng.normal(size=(2, 8, 8, 5)).astype(np.float32)
  weights = rng.normal(size=(2, 6, 16)).astype(np.float32)
  variables = _fresh_layer_variables(queries, pixel, rng)

  @jax.jit
  def run(variables, queries, pixel):
    def probe(q):
      new_queries, mask_logits, value, delta, affinity_bn = _probe_layer(variables, q, pixel)
      return (delta, mask_logits), (new_queries, value, affinity_bn)

    # One forward pass, two cotangents: d(Σ w·Δ)/dq and d(Σ c·A)/dq.
    (delta, mask_logits), vjp, (new_queries, value, affinity_bn) = jax.vjp(
      probe, queries, has_aux=True
    )
    (grad_delta,) = vjp((weights, jnp.zeros_like(mask_logits)))
    (grad_logits,) = vjp((jnp.zeros_like(delta), jnp.cos(mask_logits * 7.0 + 1.0)))
    return {
      "new_queries": new_queries,
      "mask_logits": mask_logits,
      "value": value,
      "delta": delta,
      "grad_delta": grad_delta,
      "grad_logits": grad_logits,
      "affinity_bn": affinity_bn,
    }

  out = jax.device_get(run(variables, queries, pixel))
  return {**out, "queries": queries, "params": variables["params"]}


def test_layer_batch_norm_initial_scales(layer_probe):
  """The affinity BN's scale starts at 0.1; the three residual branches' last BNs at 0."""
  scales = {
    jax.tree_util.keystr(path): np.asarray(leaf)
    for path, leaf in jax.tree_util.tree_leaves_with_path(layer_probe["params"])
    if jax.tree_util.keystr(path).endswith("['scale']")
  }
  one_channel = [v for v in scales.values() if v.shape == (1,)]
  assert len(one_channel) == 1
  np.testing.assert_array_equal(one_channel[0], [np.float32(0.1)])
  zero = [p for p, v in scales.items() if not v.any()]
  assert len(zero) == 3 and not any("KMaXPredictor" in p for p in zero)
  others = [v for p, v in scales.items() if v.shape != (1,) and p not in zero]
  assert others and all(np.all(v == 1.0) for v in others)


def test_fresh_layer_leaves_queries_unchanged_up_to_the_gelus(layer_probe):
  """Zero-initialised residual BN scales: update, attention and FFN branches all start at 0.

  So a fresh layer maps `q → gelu(gelu(q))` (the GELUs after the attention and FFN residuals).
  """
  np.testing.assert_allclose(
    layer_probe["new_queries"], _np_gelu(_np_gelu(layer_probe["queries"])), rtol=1e-5, atol=1e-6
  )


def test_kmeans_update_is_a_hard_argmax_sum(layer_probe):
  """`Δ_n = Σ_p onehot(argmax_n A)[p, n] · value(p)`: a sum over the pixels assigned to n."""
  mask_logits = layer_probe["mask_logits"].reshape(2, -1, 6)
  value = layer_probe["value"].reshape(2, -1, 16)
  assert layer_probe["delta"].shape == (2, 6, 16)
  one_hot = np.eye(6)[np.argmax(mask_logits, axis=-1)]  # [B, P, N]
  expected = np.einsum("bpn,bpd->bnd", one_hot, value.astype(np.float64))
  np.testing.assert_allclose(layer_probe["delta"], expected, rtol=1e-5, atol=1e-5)
  # Hard assignment: every pixel is counted exactly once (a sum, not a mean).
  np.testing.assert_allclose(
    layer_probe["delta"].sum(1), value.sum(1, dtype=np.float64), rtol=1e-4, atol=1e-4
  )


def test_no_gradient_flows_through_the_assignment(layer_probe):
  """Δ depends on the queries only through the stop-gradient assignment: its gradient is 0."""
  np.testing.assert_array_equal(layer_probe["grad_delta"], 0.0)
  # ... while the affinities themselves do depend on the queries.
  assert np.abs(layer_probe["grad_logits"]).max() > 1e-2


def test_affinity_batch_norm_normalises_over_all_pixels_and_queries(layer_probe):
  """Train-mode affinities: `0.1 · (x − mean) / sqrt(var + eps)` over every (b, p, n) entry."""
  assert len(layer_probe["affinity_bn"]) == 1
  raw, out = (np.asarray(a, np.float64)[..., 0] for a in layer_probe["affinity_bn"][0])
  assert raw.shape == (2, 8, 8, 6)
  expected = 0.1 * (raw - raw.mean()) / np.sqrt(raw.var() + BN_EPS)
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(layer_probe["mask_logits"], expected, rtol=1e-4, atol=1e-5)
  # Freshly normalised affinities have standard deviation ≈ 0.1 (the BN scale).
  assert np.std(out) == pytest.approx(0.1, rel=1e-2)


# ----------------------------------------------------------------------------------------------
# kMaX: semantic inference and evaluation mode.


def test_semantic_log_probs_matches_brute_force():
  rng = np.random.default_rng(2)
  mask_logits = (rng.normal(size=(2, 3, 4, 6)) * 3).astype(np.float32)
  class_logits = (rng.normal(size=(2, 6, 5)) * 3).astype(np.float32)
  # Example 1's class 4 underflows to probability 0: its log stays finite (floored at 1e-30).
  class_logits[1, :, 4] = -200.0
  out = np.asarray(jax.jit(semantic_log_probs)(mask_logits, class_logits), np.float64)
  assert out.shape == (2, 3, 4, 5)
  expected = np.zeros((2, 3, 4, 5))
  for b in range(2):
    cls = special.softmax(class_logits[b].astype(np.float64), axis=-1)  # [N, K]
    for i in range(3):
      for j in range(4):
        assign = special.softmax(mask_logits[b, i, j].astype(np.float64))  # [N]
        for k in range(5):
          expected[b, i, j, k] = sum(assign[n] * cls[n, k] for n in range(6))
  finite = expected > 1e-30
  np.testing.assert_allclose(out[finite], np.log(expected[finite]), rtol=1e-5, atol=1e-5)
  assert np.all(np.isfinite(out))
  assert np.all(out[1, ..., 4] >= np.log(1e-30) - 1e-3)
  np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, rtol=1e-5)


TINY_KMAX = KMaX(
  num_classes=3,
  num_queries=4,
  backbone_features=(4, 8),
  hidden_dim=8,
  mask_dim=8,
  num_heads=1,
  ffn_dim=8,
  blocks_per_scale=(1,),
  pixel_head_kernel=1,
)


def test_eval_mode_is_deterministic_and_per_example():
  """With running BN statistics an example's outputs ignore the rest of the batch."""
  rng = np.random.default_rng(3)
  x = rng.normal(size=(3, 8, 8, 1)).astype(np.float32)
  x_other = x.copy()
  x_other[1:] = rng.normal(size=(2, 8, 8, 1)) * 4.0 + 2.0
  # Random parameters and running statistics (no compiled initialiser), so that no decoder
  # branch starts as the identity.
  variables = _random_variables(TINY_KMAX, rng, x, train=False)
  evaluate = jax.jit(lambda v, x: TINY_KMAX.apply(v, x, train=False))

  first, again, other = (jax.device_get(evaluate(variables, b)) for b in (x, x, x_other))
  assert _shapes(first) == _shapes(
    jax.eval_shape(lambda: TINY_KMAX.apply(variables, x, train=True, mutable=["batch_stats"])[0])
  )
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(other), strict=True):
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-5)
  assert not np.allclose(first["mask_logits"][1], other["mask_logits"][1], atol=1e-3)
  # The running statistics are what eval mode normalises with: changing them changes outputs.
  shifted = {**variables, "batch_stats": jax.tree.map(lambda a: a * 1.5, variables["batch_stats"])}
  moved = jax.device_get(evaluate(shifted, x))
  for key in ("mask_logits", "class_logits"):
    assert not np.allclose(moved[key][0], first[key][0], atol=1e-3)
