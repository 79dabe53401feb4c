"""The nearest-neighbour memory term: a NumPy transcription, the teacher chooses and the student
is pulled (the authors' swapped roles leave no gradient), empty queue rows are never chosen."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlsup_jax.losses.embeddings import l2_normalise
from mlsup_jax.losses.nearest_neighbours import nearest_neighbour_loss, pooled_embedding


def _unit(key, shape):
  return l2_normalise(jax.random.normal(key, shape))


def _numpy_loss(student, teacher, memory, filled, topk):
  """Loop form: the teacher's `topk` nearest filled rows, the student's `2 − 2 cos` to them."""
  total, count = 0.0, 0
  for s, t in zip(student, teacher, strict=True):
    rows = [q for q in np.argsort(-(memory @ t), kind="stable") if filled[q]][:topk]
    total += sum(2.0 - 2.0 * float(s @ memory[q]) for q in rows)
    count += len(rows)
  return total / max(count, 1)


@pytest.mark.parametrize("filled_rows", [12, 3, 0])
def test_matches_a_numpy_transcription(filled_rows):
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  student, teacher, memory = _unit(k1, (4, 6)), _unit(k2, (4, 6)), _unit(k3, (12, 6))
  filled = np.arange(12) < filled_rows
  loss, metrics = nearest_neighbour_loss(student, teacher, memory, jnp.asarray(filled), topk=5)
  expected = _numpy_loss(*map(np.asarray, (student, teacher, memory)), filled, topk=5)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5, atol=1e-6)
  if filled_rows == 0:
    assert float(loss) == 0.0 and float(metrics["neighbour_similarity"]) == 0.0


def test_the_gradient_pulls_the_student_towards_the_teachers_neighbours():
  k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
  student, teacher, memory = _unit(k1, (3, 8)), _unit(k2, (3, 8)), _unit(k3, (10, 8))
  filled = jnp.ones(10, bool)

  def loss(s):
    return nearest_neighbour_loss(l2_normalise(s), teacher, memory, filled, topk=2)[0]

  grad = jax.grad(loss)(student)
  assert float(jnp.abs(grad).max()) > 0
  assert float(loss(student - 0.1 * grad)) < float(loss(student))
  # No gradient reaches the teacher or the queue.
  teacher_grad = jax.grad(lambda t: nearest_neighbour_loss(student, t, memory, filled, 2)[0])
  assert float(jnp.abs(teacher_grad(teacher)).max()) == 0.0

  # The authors' form — neighbours chosen by the student, the teacher's distances averaged —
  # reaches the student only through an argsort: its gradient is zero.
  def authors(s):
    _, index = jax.lax.top_k(s @ memory.T, 2)
    return jnp.mean(jnp.take_along_axis(2.0 - 2.0 * teacher @ memory.T, index, axis=1))

  assert float(jnp.abs(jax.grad(authors)(student)).max()) == 0.0


def test_pooled_embedding_averages_cells_and_normalises():
  x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
  pooled = pooled_embedding(x, pool=2)
  assert pooled.shape == (2, 12)
  cell = np.asarray(x)[:, :2, 2:].mean(axis=(1, 2))  # row cell 0, column cell 1
  raw = np.asarray(x).reshape(2, 2, 2, 2, 2, 3).mean(axis=(2, 4)).reshape(2, -1)
  np.testing.assert_allclose(raw[:, 3:6], cell, rtol=1e-6)
  np.testing.assert_allclose(pooled, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-6)
  with pytest.raises(ValueError, match="divisible"):
    pooled_embedding(x, pool=3)


def test_topk_must_fit_the_queue():
  with pytest.raises(ValueError, match="topk"):
    nearest_neighbour_loss(
      jnp.ones((1, 2)), jnp.ones((1, 2)), jnp.ones((3, 2)), jnp.ones(3, bool), 4
    )


def test_l2_normalise_has_a_finite_gradient_at_a_zero_row():
  """A zero embedding row (a ReLU'd pixel) must not turn the backward pass into NaN: the
  contrastive terms normalise every pixel, and 0 · NaN is NaN."""
  x = jnp.array([[0.0, 0.0], [3.0, 4.0]])
  grad = jax.grad(lambda v: jnp.sum(l2_normalise(v)[1]))(x)
  assert np.all(np.isfinite(np.asarray(grad)))
  np.testing.assert_allclose(l2_normalise(x), [[0.0, 0.0], [0.6, 0.8]], rtol=1e-6)
