"""The independent PyTorch ACTION++ leg: its targeted contrast and regional contrast against the
library's terms where no random draw matters, and one timed step end to end. Skipped without
PyTorch (an optional benchmark dependency, `pip install -e .[bench]`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import torch_semi_supervised as leg
from configs import semi_supervised as ssl_config
from mlsup_jax.losses import pixel_contrast, targeted_contrast
from mlsup_jax.losses.class_centres import uniform_centres

torch = pytest.importorskip("torch")


def test_targeted_contrast_matches_the_library_term():
  rng = np.random.default_rng(0)
  classes, dim, per_class, queue = 3, 8, 4, 20
  student = rng.normal(size=(classes * per_class, dim)).astype(np.float32)
  teacher = rng.normal(size=student.shape).astype(np.float32)
  labels = np.repeat(np.arange(classes), per_class)
  memory = targeted_contrast.init_memory(jax.random.key(0), queue, classes, dim)
  filled = rng.normal(size=(7, dim)).astype(np.float32)
  memory = memory._replace(
    queue=memory.queue.at[:7].set(filled / np.linalg.norm(filled, axis=1, keepdims=True)),
    queue_labels=memory.queue_labels.at[:7].set(jnp.asarray([0, 1, 2, 0, 1, 2, 0])),
    pointer=jnp.int32(7),
  )
  centres = uniform_centres(classes, dim)
  loss, new_memory, _ = targeted_contrast.targeted_contrast(
    jnp.asarray(student), jnp.asarray(teacher), jnp.asarray(labels),
    jnp.full(labels.shape, 1.0 / per_class), memory, jnp.asarray(centres), 0.2,
  )  # fmt: skip
  term = leg.TargetedContrast(torch, classes, dim, queue, centres, 0.1, torch.device("cpu"))
  term.queue = torch.tensor(np.asarray(memory.queue))
  term.queue_labels = torch.tensor(np.asarray(memory.queue_labels), dtype=torch.long)
  term.pointer, term.centroids = 7, torch.tensor(np.asarray(memory.centroids))
  torch_loss = term(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), 0.2)
  np.testing.assert_allclose(float(torch_loss), float(loss), rtol=1e-5)
  term.enqueue()
  np.testing.assert_allclose(term.queue.numpy(), np.asarray(new_memory.queue), atol=1e-6)
  np.testing.assert_array_equal(term.queue_labels.numpy(), np.asarray(new_memory.queue_labels))
  np.testing.assert_allclose(term.centroids.numpy(), np.asarray(new_memory.centroids), atol=1e-6)


def test_regional_contrast_matches_the_library_term_when_draws_do_not_matter():
  """Two classes, one embedding per class, every pixel hard: any draw gives the same loss."""
  config = ssl_config.get_config("smoke,kind=action_pp")
  term = config.loss.contrast.regional_contrast
  labels = np.zeros((2, 8, 8), np.int64)
  labels[:, :, 4:] = 1
  embedding = np.where(labels[..., None] == 0, [1.0, 0.2, 0.0], [0.3, 1.0, 0.1])
  embedding = embedding.astype(np.float32)
  probs = np.full((2, 8, 8, 2), 0.5, np.float32)
  valid = np.ones(labels.shape, bool)
  expected, _ = pixel_contrast.regional_contrast(
    jnp.asarray(embedding), jnp.asarray(labels), jnp.asarray(probs), jnp.asarray(valid),
    jax.random.key(0), num_queries=int(term.num_queries), num_negatives=int(term.num_negatives),
    temperature=0.5, strong_threshold=float(term.strong_threshold),
  )  # fmt: skip
  actual = leg.regional_contrast(
    torch, torch.tensor(embedding).movedim(-1, 1), torch.tensor(labels),
    torch.tensor(probs).movedim(-1, 1), torch.tensor(valid), term, 0.5,
  )  # fmt: skip
  np.testing.assert_allclose(float(actual), float(expected), rtol=1e-5)


def test_one_timed_step_and_other_kinds_skipped():
  config = ssl_config.get_config("smoke,kind=action_pp")
  report = leg.benchmark_torch_semi_supervised(config, 4, warmup=1, iters=1)
  assert report["leg"] == "torch" and report["step_ms_median"] > 0
  assert report["parameters"] > 0
  other = leg.benchmark_torch_semi_supervised(ssl_config.get_config("smoke,kind=fixmatch"), 4)
  assert "skipped" in other
