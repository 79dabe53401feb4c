"""Every MaxQuery-study configuration builds and its method traces (configs/maxquery.py).

Shapes only: `jax.eval_shape` of `init` (which runs the forward pass), `eval_step` and one
`train_step` on a fake batch of the configured shapes; nothing is compiled. Tracing a kMaX train
step costs seconds of Python, so steps are traced for the smoke options only (see
`_traces_train_step`); `eval_step` too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from configs import maxquery as maxquery_config
from mlsup_jax import losses
from mlsup_jax.methods import METHODS
from mlsup_jax.methods.maxquery import MAXQUERY_VARIANTS

VARIANTS = ("maxquery", "noqd", "unet")
OPTIONS = ("smoke", "", "full", "3d", "3d,smoke")


def _arg(variant: str, options: str) -> str:
  return ",".join(filter(None, (f"variant={variant}", options)))


def _spatial(config) -> tuple[int, ...]:
  source = config.data.train_source
  size = (source.image_size, source.image_size)
  return (source.depth, *size) if config.data.spatial_dims == 3 else size


def _fake_batch(config) -> dict:
  b, spatial = config.data.batch_size, _spatial(config)
  return {
    "image": jax.ShapeDtypeStruct((b, *spatial, 1), jnp.float32),
    "label": jax.ShapeDtypeStruct((b, *spatial), jnp.int32),
    "ood": jax.ShapeDtypeStruct((b, *spatial), jnp.uint8),
    "lesion": jax.ShapeDtypeStruct((b, *spatial), jnp.uint8),
    "case_ood": jax.ShapeDtypeStruct((b,), jnp.int32),
  }


# `init` traces once per model configuration: maxquery and noqd share the model (checked below).
_INIT_CACHE: dict = {}


def _init_shapes(method, config, batch, key):
  cache_key = (
    config.method,
    config.model.to_json(),
    config.optimizer.to_json(),
    tuple(sorted((name, a.shape) for name, a in batch.items())),
  )
  if cache_key not in _INIT_CACHE:
    _INIT_CACHE[cache_key] = jax.eval_shape(method.init, key, batch)
  return _INIT_CACHE[cache_key]


@pytest.mark.parametrize("options", OPTIONS)
def test_noqd_differs_from_maxquery_only_in_the_qd_term(options):
  maxquery = maxquery_config.get_config(_arg("maxquery", options)).to_dict()
  noqd = maxquery_config.get_config(_arg("noqd", options)).to_dict()
  assert maxquery["loss"]["query_distribution"]["weight"] == 1.0
  assert noqd["loss"]["query_distribution"]["weight"] == 0.0
  noqd["loss"]["query_distribution"]["weight"] = 1.0
  assert maxquery == noqd


def _traces_train_step(variant: str, options: str) -> bool:
  """Which combinations trace a whole `train_step` (seconds of Python each for kMaX).

  maxquery and noqd share model, data and optimizer (test above) and differ only in the loss
  terms, so maxquery traces its 2-D smoke step and noqd its 3-D one; the U-Net baseline (cheap)
  traces both smoke steps and the default one, whose optimizer has the warm-up schedule the
  smoke options lack. The other options differ from smoke only in sizes: they trace `init`,
  which runs the model's forward pass at the configured shapes.
  """
  if variant == "maxquery":
    return options == "smoke"
  if variant == "noqd":
    return options == "3d,smoke"
  return options in ("smoke", "3d,smoke", "")


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_config_builds_and_method_traces(variant, options):
  config = maxquery_config.get_config(_arg(variant, options))
  assert config.method == ("segmentation" if variant == "unet" else "maxquery")
  assert config.data.spatial_dims == (3 if "3d" in options else 2)
  assert config.data.train_source.spatial_dims == config.data.spatial_dims
  spatial = _spatial(config)
  b = config.data.batch_size
  # The U-Net needs every side to be a multiple of 2^(levels − 1).
  features = config.model.features if variant == "unet" else config.model.backbone_features
  factor = 2 ** (len(features) - 1)
  assert all(n % factor == 0 for n in spatial), (spatial, factor)
  if variant != "unet":
    assert len(config.model.blocks_per_scale) < len(config.model.backbone_features)
    assert sum(config.loss.query_distribution.query_split) == config.model.num_queries
    assert config.model.hidden_dim % config.model.num_heads == 0

  method = METHODS.get(config.method)(config)
  batch = _fake_batch(config)
  key = jax.random.key(0)
  state = _init_shapes(method, config, batch, key)
  assert state.step.shape == ()
  if variant == "unet":  # Instance norm: no running statistics.
    assert not jax.tree.leaves(state.model_state)
  else:
    assert "batch_stats" in state.model_state
    assert state.params["cluster_centres"].shape == (
      config.model.num_queries,
      config.model.hidden_dim,
    )

  if "smoke" in options and variant != "noqd":
    outputs = jax.eval_shape(method.eval_step, state, batch, key)
    assert outputs["pred"].shape == (b, *spatial)
    scores = {k for k in outputs if k.startswith("score/")}
    assert all(outputs[k].shape == (b, *spatial) for k in scores)
    if variant == "unet":
      assert scores == {f"score/{n}" for n in ("msp", "max_logit", "energy", "mc_dropout")}
    else:  # the paper's four-way score ablation
      assert scores == {f"score/{n}" for n in MAXQUERY_VARIANTS}
      assert outputs["assignment"].shape == (b, *spatial)

  if _traces_train_step(variant, options):
    new_state, metrics = jax.eval_shape(method.train_step, state, batch, key)
    # The step keeps every parameter's shape and dtype and counts one step.
    assert jax.tree.structure(new_state.params) == jax.tree.structure(state.params)
    assert jax.tree.leaves(new_state.params) == jax.tree.leaves(state.params)
    assert jax.tree.leaves(new_state.model_state) == jax.tree.leaves(state.model_state)
    assert new_state.step.shape == () and new_state.step.dtype == jnp.int32
    assert all(m.shape == () for m in jax.tree.leaves(metrics))
    assert metrics["loss"].dtype == jnp.float32
    active = {name for name, _, _ in losses.active_terms(config.loss)}
    assert {f"loss/{t}" for t in active} <= set(metrics)
    assert ("loss/query_distribution" in metrics) == (variant == "maxquery")
    assert ("loss/aux" in metrics) == (variant != "unet")


@pytest.mark.parametrize("variant", VARIANTS)
def test_calibration_source_only_for_unet(variant):
  config = maxquery_config.get_config(_arg(variant, "smoke"))
  assert ("calibration_source" in config.data) == (variant == "unet")
  if variant == "unet":
    assert config.data.calibration_source.split == "train"
    assert config.model.dropout_rate > 0  # MC Dropout needs it


def test_loss_terms_per_variant():
  def active(variant):
    loss = maxquery_config.get_config(_arg(variant, "smoke")).loss
    return tuple(name for name, _, _ in losses.active_terms(loss))

  assert active("maxquery") == ("cross_entropy", "query_distribution", "soft_dice")
  assert active("noqd") == active("unet") == ("cross_entropy", "soft_dice")
  for variant in ("maxquery", "noqd"):
    loss = maxquery_config.get_config(_arg(variant, "smoke")).loss
    assert tuple(loss.query_distribution.query_split) == (16, 4, 12)
  # The U-Net has no mask logits, so its config does not list the QD term at all.
  assert "query_distribution" not in maxquery_config.get_config(_arg("unet", "smoke")).loss


def test_default_and_full_sizes_differ_from_smoke():
  smoke, default, full = (maxquery_config.get_config(a) for a in ("smoke", None, "full"))
  sizes = [c.data.train_source.image_size for c in (smoke, default, full)]
  assert sizes == sorted(sizes) and len(set(sizes)) == 3
  # kMaX's decoder: blocks (2, 2, 2) and the 5×5 depth-wise pixel head in the full size only.
  assert tuple(full.model.blocks_per_scale) == (2, 2, 2)
  assert full.model.pixel_head_kernel == 5
  assert smoke.model.pixel_head_kernel == default.model.pixel_head_kernel == 1
  assert full.model.num_queries == default.model.num_queries == smoke.model.num_queries == 32


@pytest.mark.parametrize(
  "arg, match",
  [
    ("variant=maskformer", "Unknown variant"),
    ("smoke,full", "exclude"),
    ("variant=unet,full,smoke", "exclude"),
    ("tiny", "Unknown config option"),
  ],
)
def test_bad_options_raise(arg, match):
  with pytest.raises(ValueError, match=match):
    maxquery_config.get_config(arg)
