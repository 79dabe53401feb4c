"""Device mesh, shardings for batch and state, and multi-host start-up (DESIGN §3)."""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"


def maybe_initialize_distributed(force: bool = False) -> None:
  """Starts `jax.distributed` on multi-host launches; a single-process run does nothing.

  Multi-host is detected from SLURM (`SLURM_NTASKS > 1`), a TPU pod slice
  (`TPU_WORKER_HOSTNAMES` with several hosts) or an explicit `JAX_COORDINATOR_ADDRESS`;
  `force=True` (launch flag `--multihost`) always initialises. JAX reads SLURM's and TPU's
  cluster descriptions itself; a hand-made cluster (several processes on one or more machines
  without a scheduler) gives `JAX_COORDINATOR_ADDRESS` (`host:port` of process 0),
  `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` on every process. CPU processes exchange their
  collectives over gloo (`JAX_CPU_COLLECTIVES_IMPLEMENTATION` overrides it): that is what lets
  `tests/core/test_multihost.py` run 2 processes × 4 CPU devices on localhost.
  """
  env = os.environ
  multi_host = (
    force
    or "JAX_COORDINATOR_ADDRESS" in env
    or int(env.get("SLURM_NTASKS", "1")) > 1
    or "," in env.get("TPU_WORKER_HOSTNAMES", "")
  )
  if multi_host:
    jax.config.update(
      "jax_cpu_collectives_implementation", env.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION", "gloo")
    )
    explicit = {}
    if "JAX_COORDINATOR_ADDRESS" in env:
      explicit["coordinator_address"] = env["JAX_COORDINATOR_ADDRESS"]
    if "JAX_NUM_PROCESSES" in env:
      explicit["num_processes"] = int(env["JAX_NUM_PROCESSES"])
    if "JAX_PROCESS_ID" in env:
      explicit["process_id"] = int(env["JAX_PROCESS_ID"])
    jax.distributed.initialize(**explicit)


def make_mesh(mesh_config: ml_collections.ConfigDict, devices=None) -> Mesh:
  """Builds a `(data, fsdp)` mesh with `axis_types=Auto`.

  Args:
    mesh_config: `data` (int, -1 = all remaining devices) and `fsdp` (int ≥ 1).
    devices: devices to use; defaults to all devices of all processes.
  """
  devices = list(jax.devices() if devices is None else devices)
  fsdp = int(mesh_config.fsdp)
  data = int(mesh_config.data)
  if fsdp < 1 or len(devices) % fsdp:
    raise ValueError(f"mesh.fsdp={fsdp} must be ≥ 1 and divide the {len(devices)} devices.")
  if data == -1:
    data = len(devices) // fsdp
  if data * fsdp != len(devices):
    raise ValueError(
      f"mesh data={data} × fsdp={fsdp} = {data * fsdp} does not match {len(devices)} devices."
    )
  device_grid = np.asarray(devices).reshape(data, fsdp)
  return Mesh(device_grid, (DATA_AXIS, FSDP_AXIS), axis_types=(AxisType.Auto, AxisType.Auto))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """The leading (batch) axis is split over every mesh axis; the rest is replicated."""
  return NamedSharding(mesh, P((DATA_AXIS, FSDP_AXIS)))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _fsdp_spec(shape: tuple[int, ...], fsdp_size: int, min_size: int) -> P:
  """Shards the largest divisible axis of a big array over `fsdp`; small arrays stay replicated."""
  if fsdp_size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  for axis in np.argsort(shape)[::-1]:
    if shape[axis] % fsdp_size == 0:
      spec = [None] * len(shape)
      spec[axis] = FSDP_AXIS
      return P(*spec)
  return P()


def state_shardings(abstract_state, mesh: Mesh, fsdp_min_size: int = 2**18):
  """Shardings for a state pytree of `jax.ShapeDtypeStruct`s: replicated, or FSDP-sharded."""
  fsdp_size = mesh.shape[FSDP_AXIS]
  return jax.tree.map(
    lambda leaf: NamedSharding(mesh, _fsdp_spec(tuple(leaf.shape), fsdp_size, fsdp_min_size)),
    abstract_state,
  )


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
  """`[k, B, …]` stacked batches (several steps per dispatch): the batch axis is split."""
  return NamedSharding(mesh, P(None, (DATA_AXIS, FSDP_AXIS)))


def stack_local_batches(local_batches):
  """`k` local batches → one local batch of `[k, B, …]` host arrays (no device transfer)."""
  return jax.tree.map(lambda *xs: np.stack(xs), *local_batches)


def global_stacked_batch(stacked_local, mesh: Mesh):
  """Global `[k, B, …]` arrays from this process's stacked local batch (multi-host safe)."""
  sharding = stacked_batch_sharding(mesh)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), stacked_local
  )


def global_batch(local_batch, mesh: Mesh):
  """Forms global `jax.Array`s from this process's slice of the batch (multi-host safe)."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
  )
