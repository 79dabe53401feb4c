"""ACTION's similarity distillation (KL over a queue) and the shared FIFO queue."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsup_jax.losses.queues import enqueue
from mlsup_jax.losses.similarity_distillation import similarity_kl


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_kl_equals_numpy_and_only_the_student_gets_gradients():
  rng = np.random.default_rng(0)
  s, t, q = rng.normal(size=(5, 8)), rng.normal(size=(5, 8)), rng.normal(size=(12, 8))
  logits_s = _unit(s) @ _unit(q).T / 0.1
  logits_t = _unit(t) @ _unit(q).T / 0.01
  ps = np.exp(logits_s - logits_s.max(1, keepdims=True))
  ps /= ps.sum(1, keepdims=True)
  pt = np.exp(logits_t - logits_t.max(1, keepdims=True))
  pt /= pt.sum(1, keepdims=True)
  expected = np.mean(np.sum(pt * (np.log(pt + 1e-30) - np.log(ps)), axis=1))
  got = similarity_kl(jnp.asarray(s), jnp.asarray(t), jnp.asarray(q))
  assert float(got) == pytest.approx(expected, rel=1e-4)
  grads = jax.grad(similarity_kl, argnums=(0, 1, 2))(jnp.asarray(s), jnp.asarray(t), jnp.asarray(q))
  assert float(jnp.abs(grads[0]).sum()) > 0
  assert float(jnp.abs(grads[1]).sum()) == 0 and float(jnp.abs(grads[2]).sum()) == 0


def test_empty_slots_take_no_part_and_an_empty_queue_gives_zero():
  rng = np.random.default_rng(1)
  s, t, q = (jnp.asarray(rng.normal(size=shape)) for shape in [(3, 4), (3, 4), (6, 4)])
  valid = jnp.array([True, True, True, False, False, False])
  assert float(similarity_kl(s, t, q, valid)) == pytest.approx(float(similarity_kl(s, t, q[:3])))
  assert float(similarity_kl(s, t, q, jnp.zeros(6, bool))) == 0.0


def test_enqueue_writes_kept_rows_in_order_and_wraps():
  queue, pointer = jnp.zeros((4, 2)), jnp.int32(0)
  rows = jnp.arange(6.0).reshape(3, 2)
  queue, pointer = enqueue(queue, pointer, rows)
  assert int(pointer) == 3 and queue[:3].tolist() == rows.tolist()
  queue, pointer = enqueue(queue, pointer, rows + 10, jnp.array([False, True, True]))
  assert int(pointer) == 1
  np.testing.assert_array_equal(queue, [[14.0, 15.0], [2.0, 3.0], [4.0, 5.0], [12.0, 13.0]])
