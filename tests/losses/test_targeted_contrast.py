"""ACTION++: uniform class centres, their Hungarian matching, the cosine temperature, and the
targeted supervised contrastive loss with its queue, against a NumPy transcription of TSC.py."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from mlsup_jax.losses import targeted_contrast as tsc
from mlsup_jax.losses.class_centres import cosine_temperature, match_centres, uniform_centres


@pytest.mark.parametrize("num_classes, dim", [(2, 8), (4, 16), (4, 64), (8, 64)])
def test_uniform_centres_form_a_regular_simplex(num_classes, dim):
  centres = uniform_centres(num_classes, dim)
  assert centres.shape == (num_classes, dim)
  np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1.0, rtol=1e-5)
  cos = centres @ centres.T
  off = cos[~np.eye(num_classes, dtype=bool)]
  np.testing.assert_allclose(off, -1.0 / (num_classes - 1), atol=0.01)
  np.testing.assert_array_equal(uniform_centres(num_classes, dim), centres)  # cached, fixed


@pytest.mark.parametrize("num_classes", [3, 4, 5])
def test_matching_equals_scipys_hungarian_assignment(num_classes):
  rng = np.random.default_rng(num_classes)
  for _ in range(10):
    centroids = rng.normal(size=(num_classes, 6)).astype(np.float32)
    centres = rng.normal(size=(num_classes, 6)).astype(np.float32)
    rows, cols = linear_sum_assignment(-(centroids @ centres.T))
    expected = np.empty(num_classes, int)
    expected[rows] = cols
    found = match_centres(jnp.asarray(centroids), jnp.asarray(centres))
    np.testing.assert_array_equal(found, expected)
  with pytest.raises(ValueError, match="at most 8"):
    match_centres(jnp.zeros((9, 2)), jnp.zeros((9, 2)))


def test_cosine_temperature_cycles_between_high_and_low():
  values = np.asarray([cosine_temperature(t, 1000, 0.07, 1.0) for t in range(0, 301, 25)])
  assert values[0] == pytest.approx(1.0) and values[2] == pytest.approx(0.07)
  assert values[4] == pytest.approx(1.0, abs=1e-5) and values.min() >= 0.07 - 1e-6


def _reference(student, teacher, labels, queue, queue_labels, centres, assignment, tau, tw):
  """TSC.py's loss (targeted, tr = 1) in NumPy, float64, for anchors of present classes."""
  s = student / np.linalg.norm(student, axis=1, keepdims=True)
  t = teacher / np.linalg.norm(teacher, axis=1, keepdims=True)
  l_pos = np.sum(s * t, axis=1, keepdims=True)
  l_neg = s @ np.concatenate([queue, centres], axis=0).T
  logits = np.concatenate([l_pos, l_neg], axis=1) / tau
  log_prob = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  q = len(queue_labels)
  mask = (labels[:, None] == np.concatenate([queue_labels, -np.ones(len(centres))])[None]).astype(
    float
  )
  for c in np.unique(labels):
    mask[labels == c, q + assignment[c]] = 1
  mask_target = mask.copy()
  mask_target[:, :q] = 0
  mask[:, q:] = 0
  pos_view = np.concatenate([np.ones((len(s), 1)), mask + mask_target], axis=1)
  class_view = np.concatenate([np.ones((len(s), 1)), mask], axis=1)
  target_view = np.concatenate([np.zeros((len(s), 1)), mask_target], axis=1)
  loss_class = -np.sum((class_view * log_prob).sum(1) / pos_view.sum(1)) / len(s)
  loss_target = -np.sum((target_view * log_prob).sum(1) / pos_view.sum(1)) / len(s)
  return loss_class + tw * loss_target


def test_loss_equals_the_authors_formula_with_a_full_queue():
  rng = np.random.default_rng(0)
  num_classes, dim, per_class, queue_size = 3, 8, 4, 12
  labels = np.repeat(np.arange(num_classes), per_class)
  student = rng.normal(size=(len(labels), dim))
  teacher = student + 0.3 * rng.normal(size=student.shape)
  queue = rng.normal(size=(queue_size, dim))
  queue /= np.linalg.norm(queue, axis=1, keepdims=True)
  queue_labels = rng.integers(0, num_classes, queue_size)
  centres = uniform_centres(num_classes, dim)
  memory = tsc.ContrastMemory(
    jnp.asarray(queue, jnp.float32),
    jnp.asarray(queue_labels, jnp.int32),
    jnp.zeros((), jnp.int32),
    jnp.asarray(centres[[2, 0, 1]]),  # centroids near a known permutation of the centres
  )
  weights = np.full(len(labels), 1.0 / per_class)  # each class's weights sum to 1
  loss, new, metrics = tsc.targeted_contrast(
    jnp.asarray(student, jnp.float32),
    jnp.asarray(teacher, jnp.float32),
    jnp.asarray(labels, jnp.int32),
    jnp.asarray(weights, jnp.float32),
    memory,
    jnp.asarray(centres),
    0.5,
    target_weight=0.1,
  )
  assignment = np.asarray(match_centres(new.centroids, jnp.asarray(centres)))
  expected = _reference(
    student, teacher, labels, queue, queue_labels, centres, assignment, tau=0.5, tw=0.1
  )
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  # The queue took the teacher anchors in order; the pointer moved past them.
  assert int(new.pointer) == len(labels) % queue_size
  np.testing.assert_array_equal(np.asarray(new.queue_labels), labels[:queue_size])
  assert float(metrics["tsc_positives"]) > 2


def test_empty_slots_and_padding_anchors_take_no_part():
  memory = tsc.init_memory(jax.random.key(0), queue_size=6, num_classes=2, dim=2)
  student = jnp.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
  labels = jnp.array([0, 1, 0])
  weights = jnp.array([1.0, 1.0, 0.0])  # the third anchor is padding
  loss, new, _ = tsc.targeted_contrast(
    student, student, labels, weights, memory, jnp.asarray(uniform_centres(2, 2)), 0.07
  )
  assert np.isfinite(float(loss))
  assert int(new.pointer) == 2  # only the two real anchors were enqueued
  assert np.asarray(new.queue_labels).tolist() == [0, 1, -1, -1, -1, -1]
  # Twice more: the ring buffer wraps after six entries.
  for _ in range(2):
    loss, new, _ = tsc.targeted_contrast(
      student, student, labels, weights, new, jnp.asarray(uniform_centres(2, 2)), 0.07
    )
  assert int(new.pointer) == 0 and np.asarray(new.queue_labels).tolist() == [0, 1] * 3


def test_loss_is_finite_and_differentiable_at_a_small_temperature():
  rng = np.random.default_rng(1)
  student = jnp.asarray(rng.normal(size=(16, 8)), jnp.float32)
  labels = jnp.asarray(np.repeat(np.arange(4), 4), jnp.int32)
  memory = tsc.init_memory(jax.random.key(1), 64, 4, 8)
  memory = memory._replace(
    queue=jnp.asarray(rng.normal(size=(64, 8)), jnp.float32),
    queue_labels=jnp.asarray(rng.integers(0, 4, 64), jnp.int32),
  )
  centres = jnp.asarray(uniform_centres(4, 8))

  def loss(x):
    return tsc.targeted_contrast(x, x, labels, jnp.full(16, 0.25), memory, centres, 0.01)[0]

  grads = jax.grad(loss)(student)
  assert np.isfinite(float(loss(student))) and np.all(np.isfinite(np.asarray(grads)))


def test_brute_force_matching_is_exhaustive():
  centres = jnp.asarray(uniform_centres(4, 8))
  for perm in itertools.permutations(range(4)):
    np.testing.assert_array_equal(match_centres(centres[jnp.asarray(perm)], centres), perm)
