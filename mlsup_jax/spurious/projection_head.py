"""The trainable projection + classifier on frozen features, trained by ERM or by CFR.

CFR's CLIP keeps the image tower up to `layer4` frozen and trains its *projection* (the
attention pool) and the classifier. Here the frozen encoder (`frozen_encoder.py`) gives
`[N, F]` features once, and `ProjectionClassifier` is the trained part: a two-layer projection
(Dense → ReLU → Dense) to a `D`-dim embedding, dropout, and a linear classifier. CLIP's classifier
is its text tower's class prompts; with no text tower here it is a trained linear layer.

* `train_erm`: cross-entropy on the training split (CLIP + ERM: "train projection").
* `train_cfr`: CFR's calibration stage (the authors' `algorithms/Contrastive_weights.py`), per
  step, with `c(e) = 1 + 0.5·cos(2π e / E)` at epoch e of E:

    loss = c(e)·CE(calibration anchors) + c(e)·InfoNCE(anchors | positives, negatives; τ = 1)
           + w_tsc·TSC(training batch)

  The calibration anchors come from `calibration_set.py` (the ERM model's mistakes on the
  training split plus correctly classified samples per class), cycled through; each anchor
  contrasts with `P` positives (correctly classified training samples of its class, drawn
  afresh every step) one at a time against its `K` negatives, and the positives and negatives
  pass through the *current* projection (as the authors' do through the attention pool). TSC is
  the targeted supervised contrast of ACTION++ (`losses/targeted_contrast.py`: a queue, uniform
  class centres, τ 0.07, centre weight 0.2) on the training batch's embeddings.

All sampling is on device with fixed shapes; one epoch is one jitted `lax.scan`. Features are
standardised with the training split's mean and standard deviation (`Standardiser`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlsup_jax.losses import targeted_contrast as tsc
from mlsup_jax.losses.class_centres import uniform_centres
from mlsup_jax.losses.embeddings import l2_normalise

__all__ = ["ProjectionClassifier", "Standardiser", "predict", "train_cfr", "train_erm"]


@dataclasses.dataclass(frozen=True)
class Standardiser:
  """Per-feature `(x − mean) / std` with the training split's statistics."""

  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, features: np.ndarray) -> Standardiser:
    features = np.asarray(features, np.float64)
    return cls(
      features.mean(0).astype(np.float32), np.maximum(features.std(0), 1e-6).astype(np.float32)
    )

  def __call__(self, features: np.ndarray) -> np.ndarray:
    return ((np.asarray(features, np.float32) - self.mean) / self.std).astype(np.float32)


class ProjectionClassifier(nn.Module):
  """`x: [B, F]` → `{"embedding": [B, D], "logits": [B, K]}` (module docstring).

  Attributes:
    num_classes: K.
    embedding_dim: D.
    hidden_dim: the projection's hidden width (0: a linear projection).
    dropout: dropout before the classifier (the authors' 0.1).
  """

  num_classes: int
  embedding_dim: int = 64
  hidden_dim: int = 128
  dropout: float = 0.1

  def setup(self):
    self.hidden = nn.Dense(self.hidden_dim, name="projection_hidden") if self.hidden_dim else None
    self.out = nn.Dense(self.embedding_dim, name="projection_out")
    self.classifier = nn.Dense(self.num_classes, name="classifier")
    self.drop = nn.Dropout(self.dropout)

  def embed(self, x: jax.Array) -> jax.Array:
    return self.out(nn.relu(self.hidden(x)) if self.hidden is not None else x)

  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    embedding = self.embed(x)
    h = self.drop(embedding, deterministic=not train) if self.dropout else embedding
    return {"embedding": embedding, "logits": self.classifier(h)}


def _model(config, num_classes: int) -> ProjectionClassifier:
  return ProjectionClassifier(
    num_classes=num_classes,
    embedding_dim=int(config.embedding_dim),
    hidden_dim=int(config.hidden_dim),
    dropout=float(config.dropout),
  )


def _optimizer(config) -> optax.GradientTransformation:
  return optax.adamw(float(config.learning_rate), weight_decay=float(config.weight_decay))


def _steps_per_epoch(n: int, batch_size: int) -> int:
  if n < 1:
    raise ValueError("Cannot train on an empty training split.")
  return max(1, n // min(int(batch_size), n))


@functools.cache
def _predictor(num_classes: int, embedding_dim: int, hidden_dim: int, dropout: float):
  """One jitted argmax per head shape (a fresh `jax.jit` per call would recompile each time)."""
  model = ProjectionClassifier(num_classes, embedding_dim, hidden_dim, dropout)
  return jax.jit(lambda p, x: jnp.argmax(model.apply({"params": p}, x, train=False)["logits"], -1))


def predict(params, config, features: np.ndarray, num_classes: int = 2) -> np.ndarray:
  """`[N]` argmax predictions of a trained head on (standardised) features."""
  predictor = _predictor(
    int(num_classes), int(config.embedding_dim), int(config.hidden_dim), float(config.dropout)
  )
  return np.asarray(predictor(params, jnp.asarray(features, jnp.float32)), np.int32)


def _init(model, key, dim: int):
  return model.init(key, jnp.zeros((1, dim), jnp.float32), train=False)["params"]


def train_erm(features: np.ndarray, labels: np.ndarray, config, seed: int, num_classes: int = 2):
  """Trains the projection + classifier with cross-entropy; returns its params.

  Example:
    >>> import numpy as np, ml_collections
    >>> from mlsup_jax.spurious.projection_head import predict, train_erm
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> config = ml_collections.ConfigDict(dict(embedding_dim=8, hidden_dim=16, dropout=0.0,
    ...   learning_rate=1e-2, weight_decay=0.0, batch_size=16, epochs=20))
    >>> params = train_erm(x, y, config, seed=0)
    >>> float(np.mean(predict(params, config, x) == y)) > 0.9
    True

  Args:
    features: `[N, F]` standardised training features.
    labels: `[N]` int32 classes.
    config: `embedding_dim`, `hidden_dim`, `dropout`, `learning_rate`, `weight_decay`,
      `batch_size`, `epochs`.
    seed: initialisation, dropout and shuffling.
  """
  x, y = jnp.asarray(features, jnp.float32), jnp.asarray(labels, jnp.int32)
  model, optimizer = _model(config, num_classes), _optimizer(config)
  key, init_key = jax.random.split(jax.random.key(seed))
  params = _init(model, init_key, x.shape[1])
  opt_state = optimizer.init(params)
  batch = min(int(config.batch_size), len(x))
  steps = _steps_per_epoch(len(x), batch)

  @jax.jit
  def epoch(params, opt_state, key):
    order = jax.random.permutation(key, len(x))[: steps * batch].reshape(steps, batch)

    def step(carry, inputs):
      params, opt_state = carry
      index, step_key = inputs

      def loss_fn(p):
        logits = model.apply({"params": p}, x[index], train=True, rngs={"dropout": step_key})
        return optax.softmax_cross_entropy_with_integer_labels(logits["logits"], y[index]).mean()

      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    keys = jax.random.split(jax.random.fold_in(key, 1), steps)
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (order, keys))
    return params, opt_state, losses.mean()

  for e in range(int(config.epochs)):
    params, opt_state, _ = epoch(params, opt_state, jax.random.fold_in(key, e))
  return params


def _info_nce(anchor, positives, negatives, weights, temperature):
  """Mean over positives of CE(target 0) on `[a·p, a·n_1 … a·n_K] / τ`, weighted per anchor.

  anchor: `[B, D]`, positives: `[B, P, D]`, negatives: `[B, K, D]` (all unit), weights `[B]`.
  """
  pos = jnp.einsum("bd,bpd->bp", anchor, positives)[..., None]  # [B, P, 1]
  neg = jnp.einsum("bd,bkd->bk", anchor, negatives)[:, None, :]  # [B, 1, K]
  logits = jnp.concatenate([pos, jnp.broadcast_to(neg, pos.shape[:2] + neg.shape[2:])], -1)
  log_p0 = jax.nn.log_softmax(logits / temperature, axis=-1)[..., 0]  # [B, P]
  return jnp.mean(-jnp.mean(log_p0 * weights[:, None], axis=0))


def train_cfr(
  features: np.ndarray,
  labels: np.ndarray,
  calibration: Any,
  config,
  seed: int,
  num_classes: int = 2,
  init_params=None,
):
  """CFR's calibration stage (module docstring); returns the head's params.

  Args:
    features: `[N, F]` standardised training features (the calibration set indexes them).
    labels: `[N]` int32 classes.
    calibration: a `calibration_set.CalibrationSet`.
    config: `train_erm`'s fields plus `positives` (P), `contrast_temperature` (τ),
      `tsc_weight`, `tsc_temperature`, `tsc_target_weight`, `tsc_queue`.
    seed: initialisation, dropout, shuffling and positive draws.
    init_params: start from these params (default: a fresh initialisation, as the authors'
      `CFR` builds a fresh model).
  """
  x, y = jnp.asarray(features, jnp.float32), jnp.asarray(labels, jnp.int32)
  anchors = jnp.asarray(calibration.anchors, jnp.int32)
  anchor_labels = y[anchors]
  pool = jnp.asarray(calibration.positive_pool, jnp.int32)  # [C, Pmax]
  pool_sizes = jnp.asarray(calibration.positive_counts, jnp.int32)  # [C]
  negatives = jnp.asarray(calibration.negatives, jnp.int32)  # [M, K]
  model, optimizer = _model(config, num_classes), _optimizer(config)
  key, init_key, memory_key = jax.random.split(jax.random.key(seed), 3)
  params = _init(model, init_key, x.shape[1]) if init_params is None else init_params
  opt_state = optimizer.init(params)
  batch = min(int(config.batch_size), len(x))
  steps = _steps_per_epoch(len(x), batch)
  epochs = int(config.epochs)
  num_positives = int(config.positives)
  dim = int(config.embedding_dim)
  centres = jnp.asarray(uniform_centres(num_classes, dim))
  memory = tsc.init_memory(memory_key, int(config.tsc_queue), num_classes, dim)

  def embed(p, index):
    return l2_normalise(model.apply({"params": p}, x[index], method=ProjectionClassifier.embed))

  @jax.jit
  def epoch(params, opt_state, memory, key, coefficient, first):
    order = jax.random.permutation(key, len(x))[: steps * batch].reshape(steps, batch)
    # Anchor positions cycle through the calibration set (the authors' `idx mod len`).
    cycle = (first + jnp.arange(steps * batch)).reshape(steps, batch) % len(anchors)

    def step(carry, inputs):
      params, opt_state, memory = carry
      index, slots, step_key = inputs
      dropout_key, positive_key = jax.random.split(step_key)
      anchor_index = anchors[slots]
      anchor_y = anchor_labels[slots]
      draw = jax.random.randint(
        positive_key, (batch, num_positives), 0, pool_sizes[anchor_y][:, None]
      )
      positive_index = pool[anchor_y[:, None], draw]  # [B, P]

      def loss_fn(p):
        rngs = {"dropout": dropout_key}
        full = model.apply({"params": p}, x[index], train=True, rngs=rngs)
        calib = model.apply({"params": p}, x[anchor_index], train=True, rngs=rngs)
        ce = optax.softmax_cross_entropy_with_integer_labels(calib["logits"], anchor_y).mean()
        anchor = l2_normalise(calib["embedding"])
        pos = embed(p, positive_index.reshape(-1)).reshape(batch, num_positives, -1)
        neg = embed(p, negatives[slots].reshape(-1)).reshape(batch, negatives.shape[1], -1)
        contrast = _info_nce(
          anchor, pos, neg, jnp.ones((batch,)), float(config.contrast_temperature)
        )
        present = jnp.sum(jnp.bincount(y[index], length=num_classes) > 0)
        weights = jnp.full((batch,), present / batch)
        image_loss, new_memory, _ = tsc.targeted_contrast(
          full["embedding"],
          full["embedding"],
          y[index],
          weights,
          memory,
          centres,
          float(config.tsc_temperature),
          float(config.tsc_target_weight),
        )
        loss = (
          coefficient * ce
          + coefficient * float(config.contrast_weight) * contrast
          + float(config.tsc_weight) * image_loss
        )
        return loss, (new_memory, jnp.stack([ce, contrast, image_loss]))

      (_, (memory, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state, memory), parts

    keys = jax.random.split(jax.random.fold_in(key, 1), steps)
    (params, opt_state, memory), parts = jax.lax.scan(
      step, (params, opt_state, memory), (order, cycle, keys)
    )
    return params, opt_state, memory, parts.mean(0)

  for e in range(epochs):
    coefficient = 1.0 + 0.5 * np.cos(2.0 * np.pi * e / epochs)
    params, opt_state, memory, _ = epoch(
      params, opt_state, memory, jax.random.fold_in(key, e), coefficient, e * steps * batch
    )
  return params
