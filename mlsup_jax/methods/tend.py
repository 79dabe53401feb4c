"""TEND: transformation-based embedding learning for novelty detection (thesis §4.1; spec S5).

Four stages, one network state (`params = {autoencoder, classifier}`):

1. `autoencoder` — the convolutional auto-encoder learns to reconstruct ID images (MSE, Eq. 4.1).
2. `warmup` — the classifier's encoder starts from the auto-encoder's (`prepare` copies it); the
   classifier learns original (0) vs distorted (1) images with BCE only (`loss.warmup`). Every
   batch holds B originals and their B distorted versions (`data.train_transforms` includes
   `tend_distortion`, which adds `distorted`).
3. `centre` — no update: the compressed features c of the ID training images are summed into
   `state.extra` (the classifier in eval mode, as the authors' code), one epoch's worth of steps.
4. `margin` — `prepare` fixes the centre O = mean c (DeepSVDD ε-trick, `model.centre_eps`);
   training continues with BCE + the margin loss (`loss.classifier`): ID features pulled to O,
   distorted ones pushed beyond the squared distance R (`model.margin`).

Evaluation returns per-image components — classifier probability p, squared distance d to O,
and the auto-encoder's reconstruction error — and reports these scores
(`ood/detection_protocol.py`, clean or transductive protocol by `eval.protocol`):

* `tend` (thesis): λ·p + (1−λ)·d/R, λ = `eval.score_lambda`;
* `tend_code` (the authors' code): 0.9·p + 0.1·minmax(d), min–max over the reference set;
* `margin_learner` (ablation, d/R), `classifier` (p), `autoencoder` (the AE baseline: the
  reconstruction error of the stage-1 network).

Spec choices, as config fields: the encoder is fine-tuned in stage 2 as in the authors' code
(`model.freeze_encoder=True` is the thesis's "fully frozen"); the classifier flattens the actual
map (8192 at 256²), not Table 4.1's 2048; the centre is computed once after warm-up and then
fixed; checkpoints are not selected on the test set (the authors' code did): the last step is
evaluated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mlsup_jax import losses
from mlsup_jax.core.method import MAIN_STREAM, BatchKeys, Stage
from mlsup_jax.core.optimizers import build_optimizer, masked_optimizer
from mlsup_jax.core.state import TrainState
from mlsup_jax.losses import anomaly
from mlsup_jax.losses.segmentation import example_weights
from mlsup_jax.nn.autoencoder import AutoEncoder, TendClassifier
from mlsup_jax.ood import detection_protocol

CLASSIFIER_OUTPUTS = ("logit", "features", "centre")
LOSS_ROLES = {
  "autoencoder": losses.LossRole(outputs=("reconstruction",)),
  # The classifier's batch is built by the method: originals (label 0) and distorted copies (1).
  "warmup": losses.LossRole(outputs=CLASSIFIER_OUTPUTS, stream=None),
  "classifier": losses.LossRole(outputs=CLASSIFIER_OUTPUTS, stream=None),
}


def originals_and_distorted(batch: dict) -> dict:
  """`image, distorted: [B, ...]` → one batch of 2B rows labelled 0 (original) / 1 (distorted)."""
  images = jnp.concatenate([batch["image"], batch["distorted"]], axis=0)
  b = batch["image"].shape[0]
  valid = example_weights(batch, b)
  return {
    "image": images,
    "label": jnp.concatenate([jnp.zeros((b,), jnp.int32), jnp.ones((b,), jnp.int32)]),
    "valid": jnp.concatenate([valid, valid]),
  }


class TendMethod:
  """TEND's four training stages and its per-image scores (module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    m, t = config.model, config.train
    if t.centre_steps < 1:
      raise ValueError(
        f"train.centre_steps must be ≥ 1 (the centre is the mean feature of the images seen in "
        f"that stage), got {t.centre_steps}."
      )
    losses.check_loss_config(config.loss, LOSS_ROLES)
    self.loss_roles = LOSS_ROLES
    # Stages 2–4 read each original image and its distorted copy (`tend_distortion`); the
    # evaluation needs the ID / OOD flag of every image.
    self.batch_keys = BatchKeys(
      train={MAIN_STREAM: ("image", "distorted")}, eval=("image", "ood")
    ).with_losses(config.loss, LOSS_ROLES)
    dtype = jnp.dtype(m.dtype)
    self.autoencoder = AutoEncoder(
      base_width=m.base_width, depth=m.depth, use_norm=m.use_norm, dtype=dtype
    )
    self.classifier = TendClassifier(
      base_width=m.base_width,
      depth=m.depth,
      use_norm=m.use_norm,
      head_norm=m.head_norm,
      feature_dim=m.feature_dim,
      freeze_encoder=m.freeze_encoder,
      dtype=dtype,
    )
    frozen = ("encoder",) if m.freeze_encoder else ()
    ae_optimizer = masked_optimizer(
      build_optimizer(config.optimizer, t.autoencoder_steps), ("autoencoder",)
    )
    warmup_optimizer = masked_optimizer(
      build_optimizer(config.optimizer, t.warmup_steps), ("classifier",), frozen
    )
    margin_optimizer = masked_optimizer(
      build_optimizer(config.optimizer, t.margin_steps), ("classifier",), frozen
    )
    self.stages = (
      Stage("autoencoder", t.autoencoder_steps, self.autoencoder_step, ae_optimizer),
      Stage(
        "warmup",
        t.warmup_steps,
        self.classifier_step(config.loss.warmup, warmup_optimizer, "warmup"),
        warmup_optimizer,
        prepare=self.copy_encoder,
      ),
      Stage("centre", t.centre_steps, self.centre_step, optax.set_to_zero()),
      Stage(
        "margin",
        t.margin_steps,
        self.classifier_step(config.loss.classifier, margin_optimizer, "classifier"),
        margin_optimizer,
        prepare=self.fix_centre,
      ),
    )
    self.ae_optimizer = ae_optimizer

  def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
    ae_rng, cls_rng = jax.random.split(rng)
    image = example_batch["image"]
    ae = self.autoencoder.init(ae_rng, image, train=False)
    cls = self.classifier.init(cls_rng, image, train=False)
    k = self.config.model.feature_dim
    return TrainState.create(
      params={"autoencoder": ae["params"], "classifier": cls["params"]},
      optimizer=self.ae_optimizer,
      model_state={
        "autoencoder": {"batch_stats": ae.get("batch_stats", {})},
        "classifier": {"batch_stats": cls.get("batch_stats", {})},
      },
      extra={
        "centre_sum": jnp.zeros((k,), jnp.float32),
        "centre_count": jnp.zeros((), jnp.float32),
        "centre": jnp.zeros((k,), jnp.float32),
      },
    )

  # ---------------------------------------------------------------- stage transitions (pure)

  def copy_encoder(self, state: TrainState) -> TrainState:
    """Stage 2 starts from the auto-encoder's encoder (weights and BatchNorm statistics)."""
    params = dict(state.params)
    params["classifier"] = {**params["classifier"], "encoder": params["autoencoder"]["encoder"]}
    model_state = dict(state.model_state)
    ae_stats = state.model_state["autoencoder"]["batch_stats"]
    if "encoder" in ae_stats:
      cls_stats = {**model_state["classifier"]["batch_stats"], "encoder": ae_stats["encoder"]}
      model_state["classifier"] = {"batch_stats": cls_stats}
    return state.replace(params=params, model_state=model_state)

  def fix_centre(self, state: TrainState) -> TrainState:
    extra = dict(state.extra)
    extra["centre"] = anomaly.centre_from_features(
      extra["centre_sum"], extra["centre_count"], eps=self.config.model.centre_eps
    )
    return state.replace(extra=extra)

  # ---------------------------------------------------------------- train steps (pure)

  def _apply(self, name: str, state: TrainState, params, image, train: bool):
    module = self.autoencoder if name == "autoencoder" else self.classifier
    variables = {"params": params, **state.model_state[name]}
    if not train:
      return module.apply(variables, image, train=False), state.model_state[name]
    outputs, updates = module.apply(variables, image, train=True, mutable=["batch_stats"])
    return outputs, updates

  def autoencoder_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """`batch: image [B, H, W, C]` in [0, 1] → stage-1 update (reconstruction loss)."""
    del rng

    def loss_fn(ae_params):
      outputs, updates = self._apply("autoencoder", state, ae_params, batch["image"], True)
      loss, metrics = losses.weighted_sum(
        self.config.loss.autoencoder, outputs=outputs, batch=batch, role="autoencoder"
      )
      return loss, (updates, metrics)

    params = state.params
    (loss, (updates, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params["autoencoder"]
    )
    model_state = {**state.model_state, "autoencoder": updates}
    state = state.apply_subtree_gradients(
      "autoencoder", grads=grads, optimizer=self.stages[0].optimizer, model_state=model_state
    )
    return state, {"loss": loss, **metrics}

  def classifier_step(self, loss_config: ml_collections.ConfigDict, optimizer, role: str):
    """A stage-2 step summing `loss_config`'s terms (objective `role`) on originals + distorted
    images."""

    def step(state: TrainState, batch: dict, rng: jax.Array):
      del rng
      mixed = originals_and_distorted(batch)

      def loss_fn(cls_params):
        outputs, updates = self._apply("classifier", state, cls_params, mixed["image"], True)
        outputs = {**outputs, "centre": state.extra["centre"]}
        loss, metrics = losses.weighted_sum(loss_config, outputs=outputs, batch=mixed, role=role)
        return loss, (updates, metrics)

      params = state.params
      (loss, (updates, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params["classifier"]
      )
      model_state = {**state.model_state, "classifier": updates}
      state = state.apply_subtree_gradients(
        "classifier", grads=grads, optimizer=optimizer, model_state=model_state
      )
      return state, {"loss": loss, **metrics}

    return step

  def centre_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """Accumulates Σc and the count over the ID images of `batch` (no parameter update)."""
    del rng
    outputs, _ = self._apply("classifier", state, state.params["classifier"], batch["image"], False)
    weights = example_weights(batch, batch["image"].shape[0])
    extra = dict(state.extra)
    extra["centre_sum"] = extra["centre_sum"] + jnp.sum(outputs["features"] * weights[:, None], 0)
    extra["centre_count"] = extra["centre_count"] + jnp.sum(weights)
    return state.replace(step=state.step + 1, extra=extra), {"centre_count": extra["centre_count"]}

  # ---------------------------------------------------------------- evaluation

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    """Per-image components: `probability`, `distance`, `reconstruction_error`, `ood` [B]."""
    del rng
    image = batch["image"]
    cls, _ = self._apply("classifier", state, state.params["classifier"], image, False)
    ae, _ = self._apply("autoencoder", state, state.params["autoencoder"], image, False)
    return {
      "probability": jax.nn.sigmoid(cls["logit"]),
      "distance": anomaly.squared_distance(cls["features"], state.extra["centre"]),
      "reconstruction_error": anomaly.reconstruction_error(ae["reconstruction"], image),
      **detection_protocol.image_labels(batch),
    }

  def score_functions(self) -> dict:
    """Score name → `(components, reference) -> scores` (module docstring)."""
    margin, lam = self.config.model.margin, self.config.eval.score_lambda
    return {
      "tend": lambda c, r: lam * c["probability"] + (1.0 - lam) * c["distance"] / margin,
      "tend_code": lambda c, r: (
        0.9 * c["probability"]
        + 0.1 * detection_protocol.minmax_normalised(c["distance"], r["distance"])
      ),
      "margin_learner": lambda c, r: c["distance"] / margin,
      "classifier": lambda c, r: c["probability"],
      "autoencoder": lambda c, r: c["reconstruction_error"],
    }

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    return detection_protocol.report(
      outputs, self.score_functions(), self.config.eval, workdir, "tend"
    )
