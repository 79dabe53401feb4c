"""Tests of mlsup_jax.core.mesh on the 8 fake CPU devices forced by conftest.py."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mlsup_jax.core.mesh import (
  DATA_AXIS,
  FSDP_AXIS,
  batch_sharding,
  global_batch,
  make_mesh,
  replicated,
  state_shardings,
)


def _mesh(data, fsdp, devices=None):
  return make_mesh(ml_collections.ConfigDict({"data": data, "fsdp": fsdp}), devices)


@pytest.mark.parametrize(
  "data, fsdp, expected",
  [
    (-1, 1, {"data": 8, "fsdp": 1}),
    (4, 2, {"data": 4, "fsdp": 2}),
    (-1, 2, {"data": 4, "fsdp": 2}),
    (1, 8, {"data": 1, "fsdp": 8}),
    (8, 1, {"data": 8, "fsdp": 1}),
  ],
)
def test_make_mesh_shapes(devices, data, fsdp, expected):
  mesh = _mesh(data, fsdp)
  assert dict(mesh.shape) == expected
  assert mesh.axis_names == (DATA_AXIS, FSDP_AXIS)
  # Every device is used exactly once, in order.
  assert list(mesh.devices.ravel()) == list(devices)


def test_make_mesh_on_a_subset_of_devices(devices):
  mesh = _mesh(-1, 2, devices[:4])
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2}
  assert list(mesh.devices.ravel()) == list(devices[:4])


@pytest.mark.parametrize(
  "data, fsdp, pattern",
  [
    (3, 2, "does not match"),
    (16, 1, "does not match"),
    (2, 2, "does not match"),
    (-1, 3, "divide"),
    (-1, 0, "≥ 1"),
    (4, -2, "≥ 1"),
  ],
)
def test_make_mesh_mismatches_raise(devices, data, fsdp, pattern):
  with pytest.raises(ValueError, match=pattern):
    _mesh(data, fsdp)


def _abstract(shape):
  return jax.ShapeDtypeStruct(shape, np.float32)


def test_state_shardings_fsdp_shards_big_params_only(devices):
  mesh = _mesh(2, 4)
  state = {
    "big": _abstract((512, 1024)),  # largest axis divisible by 4: sharded along it
    "tall": _abstract((1026, 512)),  # largest axis 1026 not divisible: next axis is used
    "odd": _abstract((1025, 513)),  # no divisible axis: replicated
    "small": _abstract((16, 16)),
    "bias": _abstract((1024,)),
    "step": _abstract(()),
  }
  shardings = state_shardings(state, mesh)
  assert all(isinstance(s, NamedSharding) and s.mesh == mesh for s in shardings.values())
  specs = {k: s.spec for k, s in shardings.items()}
  assert specs == {
    "big": P(None, FSDP_AXIS),
    "tall": P(None, FSDP_AXIS),
    "odd": P(),
    "small": P(),
    "bias": P(),
    "step": P(),
  }
  # Placing a real array: each device holds a quarter of the columns, replicated over `data`.
  big = np.arange(512 * 1024, dtype=np.float32).reshape(512, 1024)
  placed = jax.device_put(big, shardings["big"])
  assert len(placed.addressable_shards) == 8
  for shard in placed.addressable_shards:
    assert shard.data.shape == (512, 256)
    np.testing.assert_array_equal(np.asarray(shard.data), big[shard.index])
  np.testing.assert_array_equal(np.asarray(placed), big)
  # A lower threshold shards smaller arrays too (largest axis first).
  shardings = state_shardings({"small": _abstract((16, 8))}, mesh, fsdp_min_size=64)
  assert shardings["small"].spec == P(FSDP_AXIS, None)


def test_state_shardings_without_fsdp_replicates_everything(devices):
  mesh = _mesh(-1, 1)
  shardings = state_shardings({"big": _abstract((1024, 1024)), "b": _abstract((8,))}, mesh)
  assert all(s.spec == P() for s in jax.tree.leaves(shardings))
  assert replicated(mesh).spec == P()


@pytest.mark.parametrize("data, fsdp, batch", [(-1, 1, 8), (4, 2, 16)])
def test_global_batch_shards_over_all_devices(devices, data, fsdp, batch):
  mesh = _mesh(data, fsdp)
  local = {
    "image": np.arange(batch * 4 * 4 * 3, dtype=np.float32).reshape(batch, 4, 4, 3),
    "label": np.arange(batch * 16, dtype=np.int32).reshape(batch, 4, 4),
    "valid": np.ones((batch,), np.int32),
  }
  out = global_batch(local, mesh)
  assert set(out) == set(local)
  for key, array in out.items():
    assert isinstance(array, jax.Array)
    assert array.shape == local[key].shape
    assert array.dtype == local[key].dtype
    assert array.sharding.is_equivalent_to(batch_sharding(mesh), array.ndim)
    assert len(array.sharding.device_set) == 8
    shards = array.addressable_shards
    assert len(shards) == 8
    rows = []
    for shard in shards:
      assert shard.data.shape == (batch // 8, *local[key].shape[1:])
      np.testing.assert_array_equal(np.asarray(shard.data), local[key][shard.index])
      rows.extend(range(*shard.index[0].indices(batch)))
    assert sorted(rows) == list(range(batch))  # each example on exactly one device
    np.testing.assert_array_equal(np.asarray(array), local[key])


def test_global_batch_indivisible_batch_raises(devices):
  mesh = _mesh(-1, 1)
  with pytest.raises(ValueError):
    global_batch({"image": np.zeros((6, 2), np.float32)}, mesh)
