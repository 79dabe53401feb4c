"""PMS's class-wise ring buffers: a Python FIFO reference, overfull batches, 8-device sharding."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mlsup_jax.retrieval import memory_bank as mb


def _reference(steps, num_classes, size):
  """Deques of the last `size` positive embeddings per class, in order."""
  queues = [collections.deque(maxlen=size) for _ in range(num_classes)]
  for embeddings, positive in steps:
    for b in range(len(positive)):
      for c in range(num_classes):
        if positive[b, c]:
          queues[c].append(embeddings[b, c])
  return queues


def _ring_contents(memory, c):
  """The valid entries of class c's ring, oldest first."""
  count, pointer = int(memory.count[c]), int(memory.pointer[c])
  size = memory.bank.shape[1]
  order = [(pointer - count + i) % size for i in range(count)]
  return [np.asarray(memory.bank[c, s]) for s in order]


@pytest.mark.parametrize("size", [1, 3, 8])
def test_matches_a_fifo_reference_including_overfull_batches(size):
  rng = np.random.default_rng(size)
  num_classes, dim = 4, 2
  memory = mb.init_memory(num_classes, size, dim)
  steps = []
  for _ in range(6):
    embeddings = rng.normal(size=(10, num_classes, dim)).astype(np.float32)
    positive = rng.random((10, num_classes)) < 0.5  # often more positives than slots
    steps.append((embeddings, positive))
    memory = jax.jit(mb.update)(memory, jnp.asarray(embeddings), jnp.asarray(positive))
  for c, queue in enumerate(_reference(steps, num_classes, size)):
    got = _ring_contents(memory, c)
    assert len(got) == len(queue)
    for a, b in zip(got, queue, strict=True):
      np.testing.assert_array_equal(a, b)


def test_sharded_update_equals_one_device():
  devices = np.array(jax.devices()[:8])
  if len(devices) < 8:
    pytest.skip("needs 8 (fake) devices")
  mesh = Mesh(devices, ("data",))
  rng = np.random.default_rng(0)
  embeddings = jnp.asarray(rng.normal(size=(16, 3, 4)).astype(np.float32))
  positive = jnp.asarray(rng.random((16, 3)) < 0.6)
  memory = mb.init_memory(3, 5, 4)
  single = jax.jit(mb.update)(memory, embeddings, positive)
  shard = NamedSharding(mesh, PartitionSpec("data"))
  sharded = jax.jit(mb.update)(
    memory, jax.device_put(embeddings, shard), jax.device_put(positive, shard)
  )
  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_proxies_are_the_normalised_means_of_valid_entries():
  memory = mb.init_memory(3, 4, 2)
  embeddings = jnp.array(
    [[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]], [[1.0, 2.0], [0.0, 4.0], [1.0, 1.0]]]
  )
  positive = jnp.array([[True, True, False], [True, False, False]])
  memory = mb.update(memory, embeddings, positive)
  proxies, has = mb.proxies(memory)
  np.testing.assert_allclose(proxies[0], np.array([2.0, 2.0]) / np.sqrt(8), rtol=1e-6)
  np.testing.assert_allclose(proxies[1], [0.0, 1.0], rtol=1e-6)
  np.testing.assert_array_equal(proxies[2], [0.0, 0.0])
  assert has.tolist() == [True, True, False]


def test_no_gradient_into_the_bank_and_bad_shapes():
  memory = mb.init_memory(2, 2, 1)

  def loss(x):
    new = mb.update(memory, x, jnp.ones((1, 2), bool))
    return jnp.sum(new.bank)

  assert float(jnp.abs(jax.grad(loss)(jnp.ones((1, 2, 1)))).sum()) == 0.0
  with pytest.raises(ValueError, match="must be"):
    mb.update(memory, jnp.ones((1, 3, 1)), jnp.ones((1, 3), bool))
  with pytest.raises(ValueError, match="≥ 1"):
    mb.init_memory(0, 2, 1)
