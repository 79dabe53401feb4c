"""MCPM (meta corrupted pixels mining; Wang et al., MICCAI 2020) and MW-Net (Shu et al., 2019).

A segmentation network W is trained on noisily labelled images with a weight per pixel (MCPM)
or per image (MW-Net) that a meta network Θ computes from the training loss; Θ is trained so that
a step on the weighted noisy loss lowers the loss on a small clean meta set (spec seeds §2).
Every train step, inside one jitted function:

1. virtual step  `W'(Θ) = W − α ∇_W mean(R_Θ(ℓ(W)) · ℓ(W))` on the noisy batch;
2. meta update   `Θ ← MetaOpt(Θ, ∇_Θ L_meta(W'(Θ)))` on the clean meta batch — one `jax.grad`
   of the meta loss *through* the virtual step (second order; `meta_objective` is the pure
   function of Θ it differentiates);
3. real step     `W ← Opt(W, ∇_W mean(R_Θnew(ℓ(W)) · ℓ(W)))` with the new weights detached.

`config.meta.weighting` picks the weighting, the only difference between the methods:

* `"pixel"` (MCPM): `R = MetaMaskNet(ℓ map [, image])`, one weight per pixel (`nn/meta.py`);
* `"image"` (MW-Net): `R_i = MetaWeightNet(mean_xy ℓ_i)`, one weight per image, broadcast;
* `"none"`: `R = 1` and no meta update — plain training on the noisy labels, the baseline
  evaluated by the same code.

Choices (the paper is silent; MW-Net's code where it has one, spec §2):

* `ℓ`: the per-pixel loss map of the `config.loss.train` terms (their `reduction="none"` form;
  default cross-entropy). The loss map is detached as the meta network's input.
* `config.meta.normalize`: R is divided by its mean over the batch (L2RW's and MLB-Seg's
  normalisation by Σ R), so the meta network can only move weight between pixels; `False` keeps
  MW-Net's unnormalised R, which also lets the meta network scale the whole step — early in
  training that rewards "high loss → high weight" and the sigmoid can saturate there (README).
* `α` (`config.meta.inner_lr`): 0 means the segmentation optimizer's current learning rate
  (MW-Net's choice); the virtual step is plain SGD (no momentum or weight decay), as MW-Net's
  `update_params`.
* Meta loss: the `config.loss.meta` terms (chosen by name) on the clean meta batch; default
  plain cross-entropy (MW-Net). Meta optimizer `config.meta.optimizer` (MW-Net: Adam 1e-3,
  L2 1e-4).
* `config.meta.meta_every = k`: Θ is updated on steps with `step % k == 0` only. The trainer runs
  two compiled variants of the step, with and without the meta update (`Stage.variants`), chosen
  on the host by the step number, so a step between meta updates costs a plain step. The
  one-program `train_step` does the same with a `lax.cond` (multi-step dispatch uses it); on
  XLA's CPU backend the convolutions inside a conditional's branch run without the fast path,
  which made a meta step 6× dearer there (305 vs 48 ms at `small`, one core) before the
  variants. The real step always uses the latest Θ. k = 1 builds neither.
* `config.meta.remat`: `jax.checkpoint` around the virtual step, so the meta backward pass
  recomputes the inner forward/backward instead of keeping their activations (memory ↓, about one
  more inner pass of compute); the result is unchanged.

Network: any registered segmentation network by name (`config.model.name`; the U-Net by
default); a BatchNorm network's statistics are updated by the real step only. Data: the clean
meta examples arrive as `batch["meta"]`, from the stream `config.data.streams.meta` (its own
source, batch size and transforms; `data/pipeline.py`); typically both streams are roles of one
`noisy_labels` source (`data/sources/corruption.py`), which keeps them disjoint.
Carried state: `extra = {meta_params, meta_opt_state, meta_loss, meta_metrics}` (the last meta
loss and the meta objective's metrics, logged between meta updates).

Evaluation (clean labels): per foreground class, the mean over cases of Dice, IoU, HD95, HD and
ASD (`metrics/segmentation.multiclass_report`; cases where the class is absent from both
prediction and label are skipped), averaged over classes as `dice`, `iou`, `hd95`, `hd`, `asd`;
`miou` is the mean IoU over all classes, background included (the paper's mIoU).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mlsup_jax import losses
from mlsup_jax.core.method import MAIN_STREAM, BatchKeys, Stage
from mlsup_jax.core.networks import apply_network, init_network
from mlsup_jax.core.optimizers import build_optimizer, learning_rate_schedule
from mlsup_jax.core.state import TrainState
from mlsup_jax.losses.segmentation import weighted_pixel_mean
from mlsup_jax.methods.segmentation import evaluation_class_names, predicted_classes
from mlsup_jax.metrics import segmentation
from mlsup_jax.nn import build_model
from mlsup_jax.nn.meta import MetaMaskNet, MetaWeightNet

WEIGHTINGS = ("pixel", "image", "none")
# `meta.normalize`: the smallest batch-mean weight divided by (all weights ≈ 0 stay finite).
NORMALIZE_FLOOR = 1e-6
META_STREAM = "meta"
LOSS_ROLES = {
  "train": losses.LossRole(outputs=("logits",), per_pixel=True),
  "meta": losses.LossRole(outputs=("logits",), stream=META_STREAM),
}


@dataclasses.dataclass(frozen=True)
class _MetaSchedule:
  """Host-side: which step variant runs at global step `step` (meta update when step % k == 0)."""

  every: int

  def __call__(self, step: int) -> str:
    return "meta" if int(step) % self.every == 0 else "plain"


class McpmMethod:
  """One stage: bilevel re-weighted training of a segmentation network on noisy labels."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    meta = config.meta
    if meta.weighting not in WEIGHTINGS:
      raise ValueError(f"Unknown meta.weighting {meta.weighting!r}; expected one of {WEIGHTINGS}.")
    if int(meta.meta_every) < 1:
      raise ValueError(f"meta.meta_every must be ≥ 1, got {meta.meta_every}.")
    losses.check_loss_config(config.loss, LOSS_ROLES)
    # Without meta weighting there is no meta loss to compute: its role is not used.
    self.loss_roles = LOSS_ROLES if meta.weighting != "none" else {"train": LOSS_ROLES["train"]}
    dtype = jnp.dtype(config.model.dtype)
    self.spatial_dims = config.data.spatial_dims
    self.model = build_model(config.model, spatial_dims=self.spatial_dims)
    self.meta_model = None
    if meta.weighting == "pixel":
      self.meta_model = MetaMaskNet(
        features=tuple(meta.features),
        kernel_size=meta.kernel_size,
        spatial_dims=self.spatial_dims,
        dtype=dtype,
      )
    elif meta.weighting == "image":
      self.meta_model = MetaWeightNet(hidden=meta.hidden, dtype=dtype)
    num_steps = config.train.num_steps
    self.optimizer = build_optimizer(config.optimizer, num_steps)
    self.schedule = learning_rate_schedule(config.optimizer, num_steps)
    self.meta_optimizer = build_optimizer(meta.optimizer, num_steps)
    every = int(meta.meta_every)
    variants = variant_of = None
    if self.meta_model is not None and every > 1:
      variants = {"meta": self.meta_step, "plain": self.plain_step}
      variant_of = _MetaSchedule(every)
    self.stages = (
      Stage("train", num_steps, self.train_step, self.optimizer, None, variants, variant_of),
    )
    train_keys = {MAIN_STREAM: ("image", "label")}
    if self.meta_model is not None:
      train_keys[META_STREAM] = ("image", "label")
    self.batch_keys = BatchKeys(train=train_keys, eval=("image", "label")).with_losses(
      config.loss, self.loss_roles
    )

  # ------------------------------------------------------------------------------ networks

  def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
    seg_rng, meta_rng = jax.random.split(rng)
    image = example_batch["image"]
    params, model_state = init_network(self.model, seg_rng, image)
    extra = {}
    if self.meta_model is not None:
      loss_map = jnp.zeros(image.shape[:-1], jnp.float32)
      meta_params = self.meta_model.init(meta_rng, *self._meta_inputs(loss_map, image))["params"]
      # The meta objective's metrics (their names depend on the configured terms), zeroed.
      _, meta_metrics = jax.eval_shape(
        self.meta_objective,
        meta_params,
        params,
        model_state,
        example_batch,
        jnp.zeros((), jnp.float32),
        meta_rng,
      )
      extra = {
        "meta_params": meta_params,
        "meta_opt_state": self.meta_optimizer.init(meta_params),
        "meta_loss": jnp.zeros((), jnp.float32),
        "meta_metrics": jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), meta_metrics),
      }
    return TrainState.create(
      params=params, optimizer=self.optimizer, model_state=model_state, extra=extra
    )

  def logits(self, params, model_state, image: jax.Array, rng: jax.Array):
    """`image: [B, *S, C]` → `(logits [B, *S, K], model_state)` in training mode."""
    return apply_network(self.model, params, model_state, image, train=True, rngs={"dropout": rng})

  def _meta_inputs(self, loss_map: jax.Array, image: jax.Array) -> tuple:
    if self.config.meta.weighting == "image":
      return (jnp.mean(loss_map.reshape(loss_map.shape[0], -1), axis=1),)
    return (loss_map, image if self.config.meta.use_image else None)

  def weights(self, meta_params, loss_map: jax.Array, image: jax.Array) -> jax.Array:
    """Weights `[B, *S]` of the pixels of `loss_map: [B, *S]` (`image: [B, *S, C]`): in [0, 1],
    or ≥ 0 with batch mean 1 under `meta.normalize`.

    The loss map is detached: the weights depend on Θ only, never on W through ℓ.
    """
    if self.meta_model is None:
      return jnp.ones_like(loss_map)
    loss_map = jax.lax.stop_gradient(loss_map)
    weights = self.meta_model.apply({"params": meta_params}, *self._meta_inputs(loss_map, image))
    if self.config.meta.weighting == "image":  # [B] → every pixel of the image.
      weights = jnp.broadcast_to(weights.reshape((-1,) + (1,) * self.spatial_dims), loss_map.shape)
    if self.config.meta.normalize:
      # Mean 1 over the (global) batch: the meta network decides which pixels count, not how
      # large the step is (L2RW / MLB-Seg divide by the sum; MW-Net does not normalise).
      weights = weights / jnp.maximum(jnp.mean(weights), NORMALIZE_FLOOR)
    return weights

  # ------------------------------------------------------------------------- the objectives

  def loss_map(self, params, model_state, batch: dict, rng: jax.Array):
    """`ℓ(W)`: the `config.loss.train` terms per pixel → `(ℓ [B, *S], metrics, model_state)`."""
    logits, model_state = self.logits(params, model_state, batch["image"], rng)
    loss_map, metrics = losses.weighted_sum(
      self.config.loss.train,
      outputs={"logits": logits},
      batch=batch,
      per_pixel=True,
      role="train",
    )
    return loss_map, metrics, model_state

  def weighted_loss(self, params, meta_params, model_state, batch: dict, rng: jax.Array):
    """`mean(R_Θ · ℓ(W))` on the noisy batch → `(loss, (loss_map, weights, metrics, state))`."""
    loss_map, metrics, model_state = self.loss_map(params, model_state, batch, rng)
    weights = self.weights(meta_params, loss_map, batch["image"])
    return weighted_pixel_mean(loss_map, weights), (loss_map, weights, metrics, model_state)

  def virtual_params(
    self, meta_params, params, model_state, batch: dict, inner_lr: jax.Array, rng: jax.Array
  ):
    """`W'(Θ) = W − α ∇_W mean(R_Θ · ℓ(W))`: one plain SGD step, a pure function of Θ."""
    grads = jax.grad(lambda p: self.weighted_loss(p, meta_params, model_state, batch, rng)[0])(
      params
    )
    return jax.tree.map(lambda w, g: w - inner_lr.astype(g.dtype) * g, params, grads)

  def meta_objective(
    self, meta_params, params, model_state, batch: dict, inner_lr: jax.Array, rng: jax.Array
  ):
    """`L_meta(W'(Θ))` on the clean meta batch `batch["meta"]` → `(loss, metrics)`."""
    if META_STREAM not in batch:
      raise KeyError(
        f"MCPM / MW-Net need the clean meta examples as batch[{META_STREAM!r}]: set "
        f"config.data.streams.{META_STREAM} to the clean source (got keys {sorted(batch)})."
      )
    virtual_rng, meta_rng = jax.random.split(rng)
    virtual = jax.checkpoint(self.virtual_params) if self.config.meta.remat else self.virtual_params
    new_params = virtual(meta_params, params, model_state, batch, inner_lr, virtual_rng)
    meta_batch = batch[META_STREAM]
    logits, _ = self.logits(new_params, model_state, meta_batch["image"], meta_rng)
    return losses.weighted_sum(
      self.config.loss.meta, outputs={"logits": logits}, batch=meta_batch, role="meta"
    )

  def meta_gradient(
    self, meta_params, params, model_state, batch: dict, inner_lr: jax.Array, rng: jax.Array
  ):
    """`(meta loss, its metrics, ∇_Θ meta loss)`: one `jax.grad` through the virtual step."""
    (loss, metrics), grads = jax.value_and_grad(self.meta_objective, has_aux=True)(
      meta_params, params, model_state, batch, inner_lr, rng
    )
    return loss, metrics, grads

  def inner_lr(self, step: jax.Array) -> jax.Array:
    """α: `config.meta.inner_lr`, or the optimizer's current learning rate when it is 0."""
    if self.config.meta.inner_lr > 0:
      return jnp.asarray(self.config.meta.inner_lr, jnp.float32)
    return jnp.asarray(self.schedule(step), jnp.float32)

  # ----------------------------------------------------------------------------------- steps

  def meta_update(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    """Step 2: the new `extra` (meta params, meta optimizer state, meta loss and metrics)."""
    extra = state.extra
    loss, metrics, grads = self.meta_gradient(
      extra["meta_params"],
      state.params,
      state.model_state,
      batch,
      self.inner_lr(state.step),
      rng,
    )
    updates, opt_state = self.meta_optimizer.update(
      grads, extra["meta_opt_state"], extra["meta_params"]
    )
    return {
      "meta_params": optax.apply_updates(extra["meta_params"], updates),
      "meta_opt_state": opt_state,
      "meta_loss": loss.astype(extra["meta_loss"].dtype),
      "meta_metrics": metrics,
    }

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """`batch: image [B, *S, C], label [B, *S], meta: {image, label}` → new state, metrics."""
    return self._train_step(state, batch, rng, meta=None)

  def meta_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """`train_step` at a step with a meta update (the trainer's variant; no `lax.cond`)."""
    return self._train_step(state, batch, rng, meta=True)

  def plain_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """`train_step` at a step without a meta update (Θ as it is)."""
    return self._train_step(state, batch, rng, meta=False)

  def _train_step(self, state: TrainState, batch: dict, rng: jax.Array, meta: bool | None):
    """`meta`: True / False — whether this step updates Θ; None — decided in the program by
    `state.step % meta_every` (a `lax.cond`)."""
    meta_rng, real_rng = jax.random.split(rng)
    extra, metrics = state.extra, {}
    if self.meta_model is not None:
      every = int(self.config.meta.meta_every)
      if every == 1 or meta is True:
        extra = self.meta_update(state, batch, meta_rng)
      elif meta is None:
        extra = jax.lax.cond(
          state.step % every == 0,
          lambda: self.meta_update(state, batch, meta_rng),
          lambda: state.extra,
        )
      metrics["meta_loss"] = extra["meta_loss"]
      losses.merge_metrics(metrics, extra["meta_metrics"], "config.loss.meta")
    meta_params = extra.get("meta_params")
    (loss, (loss_map, weights, loss_metrics, model_state)), grads = jax.value_and_grad(
      self.weighted_loss, has_aux=True
    )(state.params, meta_params, state.model_state, batch, real_rng)
    state = state.apply_gradients(
      grads=grads, optimizer=self.optimizer, extra=extra, model_state=model_state
    )
    losses.merge_metrics(metrics, loss_metrics, "config.loss.train")
    losses.merge_metrics(
      metrics,
      {
        "loss": loss,
        "loss_map_mean": jnp.mean(loss_map),
        "weight_mean": jnp.mean(weights),
        "weight_min": jnp.min(weights),
      },
      "MCPM",
    )
    if "clean_label" in batch:  # Diagnostics only: are corrupted pixels down-weighted?
      wrong = (batch["label"] != batch["clean_label"]).astype(weights.dtype)
      right = 1.0 - wrong
      metrics["noisy_pixel_fraction"] = jnp.mean(wrong)
      metrics["weight_noisy_pixels"] = jnp.sum(weights * wrong) / jnp.maximum(jnp.sum(wrong), 1)
      metrics["weight_clean_pixels"] = jnp.sum(weights * right) / jnp.maximum(jnp.sum(right), 1)
    return state, metrics

  # ------------------------------------------------------------------------------ evaluation

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    del rng  # Inference is deterministic.
    logits, _ = apply_network(
      self.model, state.params, state.model_state, batch["image"], train=False
    )
    return {"pred": predicted_classes(logits), "label": batch["label"]}

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    """Per-class overlap and surface metrics on the clean evaluation labels."""
    del workdir  # No figures.
    return segmentation.multiclass_report(
      outputs["pred"],
      outputs["label"],
      evaluation_class_names(self.config),
      missed_distance=self.config.eval.missed_distance,
    )
