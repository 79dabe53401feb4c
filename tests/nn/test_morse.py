"""MORSE's head on every backbone (2-D and 3-D), its gating, refinement and loss schedule."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import morse as morse_config
from mlsup_jax.core.run_setup import RunSetup
from mlsup_jax.methods.morse import point_loss_weight
from mlsup_jax.metrics.segmentation import boundary_accuracy, boundary_mask
from mlsup_jax.nn import build_model
from mlsup_jax.nn.morse import expert_mask


def _model(backbone: dict, spatial_dims=2, **fields):
  section = {
    "name": "morse",
    "backbone": backbone,
    "num_classes": 3,
    "feature_dim": 8,
    "expert_dim": 8,
    "fc_dim": 16,
    "train_points": 32,
    "subdivision_points": 20,
    **fields,
  }
  return build_model(ml_collections.ConfigDict(section), spatial_dims=spatial_dims)


BACKBONES = {
  "unet": {"name": "unet", "features": (8, 16)},
  "scunet": {"name": "scunet", "dropout_rate": 0.0},
  "kmax": {
    "name": "kmax",
    "backbone_features": (8, 16, 32),
    "hidden_dim": 16,
    "mask_dim": 8,
    "num_heads": 2,
    "ffn_dim": 16,
    "blocks_per_scale": (1, 1),
    "num_queries": 4,
  },
}


@pytest.mark.parametrize(
  "backbone, spatial_dims, shape",
  [
    ("unet", 2, (2, 32, 32, 1)),
    ("scunet", 2, (2, 32, 32, 1)),
    ("kmax", 2, (2, 32, 32, 1)),
    ("unet", 3, (1, 16, 16, 8, 1)),
    ("kmax", 3, (1, 16, 16, 8, 1)),
  ],
)
def test_every_backbone_trains_and_refines(backbone, spatial_dims, shape):
  model = _model(BACKBONES[backbone], spatial_dims)
  x = jax.random.uniform(jax.random.key(0), shape)
  variables = model.init(
    {"params": jax.random.key(1), "dropout": jax.random.key(2)}, x, train=False
  )
  out, _ = model.apply(
    variables, x, train=True, rngs={"dropout": jax.random.key(3)}, mutable=["batch_stats"]
  )
  assert out["logits"].shape == (*shape[:-1], 3)
  assert out["point_logits"].shape == (shape[0], 32, 3)
  assert out["point_coords"].shape == (shape[0], 32, spatial_dims)
  assert bool(jnp.all((out["point_coords"] >= 0) & (out["point_coords"] <= 1)))
  evaluated = model.apply(variables, x, train=False)
  refined, coarse = evaluated["logits"], evaluated["coarse_logits"]
  # Only the re-predicted pixels change: at most steps × points of them per image.
  changed = jnp.any(refined != coarse, axis=-1).reshape(shape[0], -1).sum(axis=1)
  assert int(changed.max()) <= 2 * 20
  assert int(changed.min()) > 0


def test_the_refined_pixels_are_the_most_uncertain():
  model = _model(BACKBONES["unet"], subdivision_steps=1, subdivision_points=10)
  x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 1))
  variables = model.init(
    {"params": jax.random.key(1), "dropout": jax.random.key(2)}, x, train=False
  )
  out = model.apply(variables, x, train=False)
  coarse = out["coarse_logits"][0].reshape(-1, 3)
  top = jnp.sort(coarse, axis=-1)
  margin = np.asarray(top[:, -1] - top[:, -2])
  changed = np.flatnonzero(np.any(np.asarray(out["logits"][0].reshape(-1, 3) != coarse), -1))
  assert set(changed) <= set(np.argsort(margin, kind="stable")[:10])


def test_expert_mask_drops_between_zero_and_max_experts():
  counts = [int((~expert_mask(jax.random.key(i), 5, 4)).sum()) for i in range(200)]
  assert set(counts) == {0, 1, 2, 3, 4}
  assert all(int((~expert_mask(jax.random.key(i), 3, 4)).sum()) <= 3 for i in range(50))
  assert all(bool(expert_mask(jax.random.key(i), 5, 0).all()) for i in range(20))


def test_stochastic_gating_only_in_training():
  gated = _model(BACKBONES["unet"], stochastic_gating=True)
  x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 1))
  variables = gated.init(
    {"params": jax.random.key(1), "dropout": jax.random.key(2)}, x, train=False
  )
  plain = _model(BACKBONES["unet"], stochastic_gating=False)
  np.testing.assert_array_equal(
    gated.apply(variables, x, train=False)["logits"],
    plain.apply(variables, x, train=False)["logits"],
  )


def test_point_loss_warm_up():
  weights = [float(point_loss_weight(t, 100, 0.5, 0.5)) for t in (0, 49, 50, 75, 100, 200)]
  np.testing.assert_allclose(weights, [0.0, 0.0, 0.0, 0.25, 0.5, 0.5])


def test_bad_backbones_are_rejected():
  x = jnp.zeros((1, 16, 16, 1))
  with pytest.raises(ValueError, match="backbone must be one of"):
    _model({"name": "cnn_classifier"}).init(jax.random.key(0), x, train=False)
  with pytest.raises(ValueError, match="num_classes"):
    _model({**BACKBONES["unet"], "num_classes": 5}).init(jax.random.key(0), x, train=False)


def test_boundary_accuracy_by_hand():
  label = np.array([[[0, 0, 0], [0, 1, 1], [0, 1, 1]]])
  expected = np.array([[[0, 1, 1], [1, 1, 1], [1, 1, 0]]], bool)  # a face neighbour differs
  np.testing.assert_array_equal(boundary_mask(label), expected)
  assert boundary_accuracy(np.zeros_like(label), label) == 4 / 7  # the four label-0 ones
  assert boundary_accuracy(label, label) == 1.0
  assert boundary_accuracy(np.zeros_like(label), np.zeros_like(label)) is None


@pytest.mark.parametrize(
  "options",
  [
    "smoke",
    "smoke,backbone=scunet",
    "smoke,backbone=kmax",
    "smoke,3d",
    "smoke,3d,backbone=kmax",
    "smoke,variant=backbone",
    "smoke,variant=implicit_only",
    "smoke,variant=moe_only",
  ],
)
def test_configs_trace(options):
  setup = RunSetup(morse_config.get_config(options))
  abstract, _ = setup.state_shardings(0)
  batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), setup.example_batch)
  _, metrics = jax.eval_shape(setup.stages[0].train_step, abstract, batch, setup.train_rng)
  assert "loss" in metrics
  if "variant=backbone" not in options:
    assert {"point_loss", "point_weight"} <= set(metrics)
