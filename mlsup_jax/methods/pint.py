"""PINT: pixel- and image-level noise-tolerant learning (Shi & Wu, MICCAI 2021).

A segmentation network (the student, parameters θ) learns from noisily labelled images; an EMA
copy of it (the teacher θ̃) says which labels to trust. Formulas from specs
`seeds_000_003_segmentation_methods.md` §3 ([S] = stated in the seed slides) with the constants
of UA-MT, the public code PINT builds on (`reference_code_constants.md` §3, [C]); our choices
where both are silent are marked [R]. Every train step, inside one jitted function:

1. **Teacher passes** [S; C: T = 8, noise]: T passes of the teacher on `x + clip(ε, −0.2, 0.2)`,
   `ε ~ N(0, 0.1²)` (dropout active if the model has any: UA-MT's teacher stays in train mode),
   give `p̄_v = (1/T) Σ_k p_v^(k)` and the pixel uncertainty `u_v = −Σ_c p̄_{v,c} ln p̄_{v,c}`.
   The pseudo-label is `ŷ_v = p̄_v` [R: the seed says "the teacher prediction"; the mean of the
   T passes needs no extra pass].
2. **Pixel level (PNT)** [S]: `L_v = α_v L_seg(f_v, y_v) + (1 − α_v) L_pse(f_v, ŷ_v)` with
   `L_seg` the cross-entropy with the noisy label and `L_pse = ‖f_v − ŷ_v‖²` (f = the student's
   class probabilities; `losses/consistency.py`). `α_v` from `u_v` (NOT STATED; spec default):
   `"hard"`: `α_v = 1[u_v < τ_t]`, `τ_t = (a + (b − a) r(t, T_τ)) · scale` with UA-MT's binary
   scale ln 2 [C] generalised to ln K, the entropy ceiling of K classes [R; `pint.threshold_scale`],
   `r(t, L) = exp(−5 (1 − t/L)²)` (`core/teacher.py`) and T_τ = `threshold_rampup_steps`. UA-MT
   ramps a = 0.75 → b = 1 over the whole run [C]; our default holds τ = 0.75 ln K constant
   (a = b = 0.75, `pint.threshold_start` / `threshold_end`) [R; chosen on validation slices,
   configs/pint.py]: at b = 1, τ reaches the entropy ceiling, so `α_v = 1` at (almost) every pixel
   and the pixel level switches itself off as training ends. `"soft"` [R]:
   `α_v = sigmoid((τ_t − u_v) / s)`, which tends to the hard indicator as the temperature s → 0.
   Low uncertainty → trust the label.
3. **Image level (INT)** [S]: `U_i = (1/N_i) Σ_v u_v`, `L_i = α_i L_seg,i + (1 − α_i) L_pse,i`.
   `α_i` from the rank of `U_i` in the (global) batch [R; the spec asks to document it]: with
   `ρ_i ∈ {0, …, B−1}` the rank in increasing `U` (ties by position), `"rank_linear"`:
   `α_i = 1 − ρ_i / (B − 1)` (the most certain image 1, the least 0; 1 when B = 1);
   `"rank_hard"`: `α_i = 1[ρ_i < round(image_keep_fraction · B)]`.
4. **The weight of the label at pixel v of image i**, `w_iv`, by the switches `pint.pixel` /
   `pint.image`: PNT `w = α_v`; INT `w = α_i`; PINT [R: the seed gives no joint formula]
   `combine="rescue"` (default) `w = 1 − (1 − α_i)(1 − α_v)` — a label is replaced by the
   pseudo-label only where both levels distrust it, i.e. `L_i = α_i L_seg,i + (1 − α_i) L^PNT_i`:
   the image level gives back the clean-but-uncertain boundary pixels that pixel-level learning
   alone neglects (the seed's motivation for the image level); `combine="product"`
   `w = α_i α_v` trusts a label only where both levels do. Both switches off: `w = 1`, plain
   cross-entropy training on the noisy labels (the baseline); the teacher is still
   EMA-updated (and can be evaluated) but its T passes are skipped.
5. **Ramp-up** [R; after UA-MT's consistency ramp]: `w̃ = 1 − λ_t (1 − w)`,
   `λ_t = r(t, pseudo_label_rampup_steps)`: early on the teacher is as untrained as the student,
   so the step starts as plain supervised training and moves to the PINT weights.
   `pseudo_label_rampup_steps = 0` gives `λ = 1`, the spec's formulas exactly.
6. **Loss**: `L = (1/(B N)) Σ_{i,v} [w̃_iv L_seg,iv + (1 − w̃_iv) L_pse,iv]` (the weights and
   the pseudo-labels are constants: no gradient flows through the teacher). One optimizer step.
7. **EMA** [S; C]: `θ̃ ← γ_t θ̃ + (1 − γ_t) θ` with the new θ, `γ_t = min(1 − 1/(t+1), 0.99)`,
   t = the steps taken before this one. The teacher starts as a copy of the student (UA-MT
   initialises it separately, but `γ_0 = 0` overwrites it at the first update either way).

Carried state: `extra = {"teacher_params"}` (not touched by the optimizer). `L_seg` and `L_pse` are
per-pixel loss terms chosen by name: `config.loss.supervised` (on the noisy label; default
cross-entropy) and `config.loss.pseudo_label` (against the teacher's `target_probs`; default
`pseudo_label_mse`). The network is any registered segmentation network (`config.model.name`;
a BatchNorm network runs its teacher passes in training mode, as UA-MT's). Diagnostics when the
batch carries them (`noisy_labels` sources, `data/sources/corruption.py`): the mean label weight
and uncertainty on pixels whose label is wrong vs right (`clean_label`; never trained on), and the
mean image weight of corrupted vs clean images (`label_corrupted`).

Evaluation: the student (`eval.use_teacher=True`: the teacher) on clean labels, with the same
per-class Dice, IoU, HD95, ASD and mIoU as MCPM / MW-Net (`methods/mcpm.py`), so the noisy-label
methods are compared by one report.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections

from mlsup_jax import losses
from mlsup_jax.core import teacher
from mlsup_jax.core.method import MAIN_STREAM, BatchKeys, Stage
from mlsup_jax.core.networks import apply_network, init_network
from mlsup_jax.core.optimizers import build_optimizer
from mlsup_jax.core.state import TrainState
from mlsup_jax.losses.consistency import class_probabilities
from mlsup_jax.losses.segmentation import weighted_pixel_mean
from mlsup_jax.methods.segmentation import evaluation_class_names, predicted_classes
from mlsup_jax.metrics import segmentation
from mlsup_jax.nn import build_model
from mlsup_jax.ood import uncertainty as teacher_uncertainty

LOSS_ROLES = {
  "supervised": losses.LossRole(outputs=("logits",), per_pixel=True),
  "pseudo_label": losses.LossRole(outputs=("logits", "target_probs"), per_pixel=True),
}

PIXEL_WEIGHTINGS = ("hard", "soft")
IMAGE_WEIGHTINGS = ("rank_linear", "rank_hard")
COMBINES = ("rescue", "product")


class PintMethod:
  """One stage: a student trained on noisy labels weighted by its EMA teacher's uncertainty."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    m, cfg = config.model, config.pint
    for name, value, allowed in (
      ("pixel_weighting", cfg.pixel_weighting, PIXEL_WEIGHTINGS),
      ("image_weighting", cfg.image_weighting, IMAGE_WEIGHTINGS),
      ("combine", cfg.combine, COMBINES),
    ):
      if value not in allowed:
        raise ValueError(f"Unknown pint.{name} {value!r}; expected one of {allowed}.")
    if int(cfg.num_passes) < 1:
      raise ValueError(f"pint.num_passes (T) must be ≥ 1, got {cfg.num_passes}.")
    if not 0.0 <= float(cfg.ema_decay) < 1.0:
      raise ValueError(f"pint.ema_decay must lie in [0, 1), got {cfg.ema_decay}.")
    if cfg.pixel_weighting == "soft" and not float(cfg.soft_temperature) > 0:
      raise ValueError(f"pint.soft_temperature must be > 0, got {cfg.soft_temperature}.")
    losses.check_loss_config(config.loss, LOSS_ROLES)
    self.loss_roles = LOSS_ROLES
    self.model = build_model(m, spatial_dims=config.data.spatial_dims)
    # Both switches off: the pseudo-labels are never used, so the T passes are skipped.
    self.uses_teacher = bool(cfg.pixel) or bool(cfg.image)
    self.optimizer = build_optimizer(config.optimizer, config.train.num_steps)
    self.stages = (Stage("train", config.train.num_steps, self.train_step, self.optimizer),)
    self.batch_keys = BatchKeys(
      train={MAIN_STREAM: ("image", "label")}, eval=("image", "label")
    ).with_losses(config.loss, self.loss_roles)

  def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
    params, model_state = init_network(self.model, rng, example_batch["image"])
    teacher_params = jax.tree.map(jnp.copy, params)
    return TrainState.create(
      params=params,
      optimizer=self.optimizer,
      model_state=model_state,
      extra={"teacher_params": teacher_params},
    )

  # ------------------------------------------------------------------------------ networks

  def logits(self, params, model_state, image: jax.Array, rng: jax.Array):
    """`image: [B, *S, C]` → `(logits [B, *S, K], model_state)` in training mode."""
    return apply_network(self.model, params, model_state, image, train=True, rngs={"dropout": rng})

  def teacher_predictions(self, teacher_params, model_state, image: jax.Array, rng: jax.Array):
    """Step 1: `image: [B, *S, C]` → `(ŷ = p̄ [B, *S, K'], u [B, *S])`, K' = max(K, 2).

    Both are constants for the student's gradient.
    """
    cfg = self.config.pint

    def predict(x, key):
      return class_probabilities(self.logits(teacher_params, model_state, x, key)[0])

    probs = teacher_uncertainty.perturbed_predictions(
      predict,
      image,
      rng,
      num_passes=int(cfg.num_passes),
      noise_std=float(cfg.noise_std),
      noise_clip=float(cfg.noise_clip),
      passes_per_call=int(cfg.passes_per_call) or None,
    )
    mean, uncertainty = teacher_uncertainty.mean_and_entropy(jax.lax.stop_gradient(probs))
    return mean, uncertainty

  # ------------------------------------------------------------------------------- weights

  def threshold(self, step: jax.Array) -> jax.Array:
    """`τ_t = (a + (b − a) r(t, T_τ)) · scale`; UA-MT: a = 0.75, b = 1, scale = ln 2 (binary)."""
    cfg = self.config.pint
    ramp = teacher.sigmoid_rampup(step, int(cfg.threshold_rampup_steps))
    start, end = float(cfg.threshold_start), float(cfg.threshold_end)
    return (start + (end - start) * ramp) * float(cfg.threshold_scale)

  def pixel_trust(self, uncertainty: jax.Array, step: jax.Array) -> jax.Array:
    """Step 2: `α_v` `[B, *S]` in [0, 1] from `u: [B, *S]` (hard or soft threshold)."""
    tau = self.threshold(step)
    if self.config.pint.pixel_weighting == "hard":
      return (uncertainty < tau).astype(jnp.float32)
    return jax.nn.sigmoid((tau - uncertainty) / float(self.config.pint.soft_temperature))

  def image_trust(self, uncertainty: jax.Array) -> jax.Array:
    """Step 3: `α_i` `[B]` from the rank of `U_i = mean_v u_v` (`u: [B, *S]`) in the batch."""
    b = uncertainty.shape[0]
    image_u = jnp.mean(uncertainty.reshape(b, -1), axis=1)
    # argsort is stable: equal U_i are ranked by their position in the batch.
    ranks = jnp.argsort(jnp.argsort(image_u)).astype(jnp.float32)
    if self.config.pint.image_weighting == "rank_linear":
      return 1.0 - ranks / max(b - 1, 1)
    keep = math.floor(float(self.config.pint.image_keep_fraction) * b + 0.5)
    return (ranks < keep).astype(jnp.float32)

  def label_weights(self, uncertainty: jax.Array, step: jax.Array):
    """Steps 4–5: `u: [B, *S]` → `(w̃ [B, *S], parts)`; `parts` holds `α_v`, `α_i`, `λ_t`."""
    cfg = self.config.pint
    spatial = uncertainty.ndim - 1
    parts = {"rampup": teacher.sigmoid_rampup(step, int(cfg.pseudo_label_rampup_steps))}
    weights = jnp.ones_like(uncertainty)
    if cfg.pixel:
      parts["pixel_trust"] = self.pixel_trust(uncertainty, step)
      weights = parts["pixel_trust"]
    if cfg.image:
      parts["image_trust"] = self.image_trust(uncertainty)
      alpha_i = jnp.broadcast_to(
        parts["image_trust"].reshape((-1,) + (1,) * spatial), uncertainty.shape
      )
      if not cfg.pixel:
        weights = alpha_i
      elif cfg.combine == "rescue":
        weights = 1.0 - (1.0 - alpha_i) * (1.0 - weights)
      else:
        weights = alpha_i * weights
    return 1.0 - parts["rampup"] * (1.0 - weights), parts

  # --------------------------------------------------------------------------------- steps

  def loss(self, params, model_state, batch: dict, target, weights: jax.Array, rng: jax.Array):
    """Step 6 → `(loss, (L_seg [B, *S], L_pse [B, *S] or None, metrics, model_state))`.

    `target: [B, *S, K']` are the teacher's pseudo-labels (None: plain training).
    """
    logits, model_state = self.logits(params, model_state, batch["image"], rng)
    seg, metrics = losses.weighted_sum(
      self.config.loss.supervised,
      outputs={"logits": logits},
      batch=batch,
      per_pixel=True,
      role="supervised",
    )
    if target is None:
      return weighted_pixel_mean(seg, weights), (seg, None, metrics, model_state)
    pse, pse_metrics = losses.weighted_sum(
      self.config.loss.pseudo_label,
      outputs={"logits": logits, "target_probs": target},
      batch=batch,
      per_pixel=True,
      role="pseudo_label",
    )
    losses.merge_metrics(metrics, pse_metrics, "config.loss.pseudo_label")
    loss = weighted_pixel_mean(seg, weights) + weighted_pixel_mean(pse, 1.0 - weights)
    return loss, (seg, pse, metrics, model_state)

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """`batch: image [B, *S, C], label [B, *S]` (noisy) → updated state and scalar metrics."""
    cfg = self.config.pint
    teacher_rng, student_rng = jax.random.split(rng)
    teacher_params = state.extra["teacher_params"]
    metrics = {}
    if self.uses_teacher:
      target, uncertainty = self.teacher_predictions(
        teacher_params, state.model_state, batch["image"], teacher_rng
      )
      weights, parts = self.label_weights(uncertainty, state.step)
      metrics.update(
        uncertainty=jnp.mean(uncertainty),
        threshold=self.threshold(state.step),
        rampup=parts["rampup"],
      )
      for name in ("pixel_trust", "image_trust"):
        if name in parts:
          metrics[name] = jnp.mean(parts[name])
    else:
      target, uncertainty, parts = None, None, {}
      weights = jnp.ones(batch["label"].shape, jnp.float32)
    (loss, (seg, pse, loss_metrics, model_state)), grads = jax.value_and_grad(
      self.loss, has_aux=True
    )(state.params, state.model_state, batch, target, weights, student_rng)
    gamma = teacher.ema_decay(state.step, float(cfg.ema_decay))
    state = state.apply_gradients(grads=grads, optimizer=self.optimizer, model_state=model_state)
    state = state.replace(
      extra={"teacher_params": teacher.ema_update(teacher_params, state.params, gamma)}
    )
    losses.merge_metrics(metrics, loss_metrics, "config.loss")
    losses.merge_metrics(
      metrics,
      {
        "loss": loss,
        "supervised_loss_mean": jnp.mean(seg),
        "label_weight": jnp.mean(weights),
        "ema_decay": gamma,
      },
      "PINT",
    )
    if pse is not None:
      metrics["pseudo_label_loss_mean"] = jnp.mean(pse)
    metrics.update(self.noise_diagnostics(batch, weights, uncertainty, parts))
    return state, metrics

  @staticmethod
  def noise_diagnostics(batch: dict, weights, uncertainty, parts: dict) -> dict:
    """Do wrong labels get low weights? Only from `clean_label` / `label_corrupted` if present."""

    def mean_where(values, mask):
      mask = mask.astype(jnp.float32)
      return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    out = {}
    if "clean_label" in batch:
      wrong = batch["label"] != batch["clean_label"]
      out["noisy_pixel_fraction"] = jnp.mean(wrong.astype(jnp.float32))
      out["weight_noisy_pixels"] = mean_where(weights, wrong)
      out["weight_clean_pixels"] = mean_where(weights, ~wrong)
      if uncertainty is not None:
        out["uncertainty_noisy_pixels"] = mean_where(uncertainty, wrong)
        out["uncertainty_clean_pixels"] = mean_where(uncertainty, ~wrong)
    if "label_corrupted" in batch and "image_trust" in parts:
      corrupted = batch["label_corrupted"] > 0
      out["image_trust_corrupted"] = mean_where(parts["image_trust"], corrupted)
      out["image_trust_clean"] = mean_where(parts["image_trust"], ~corrupted)
    return out

  # ------------------------------------------------------------------------------ evaluation

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    del rng  # Inference is deterministic.
    params = state.extra["teacher_params"] if self.config.eval.use_teacher else state.params
    logits, _ = apply_network(self.model, params, state.model_state, batch["image"], train=False)
    return {"pred": predicted_classes(logits), "label": batch["label"]}

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    """Per-class overlap and surface metrics on the clean evaluation labels (as MCPM)."""
    del workdir  # No figures.
    return segmentation.multiclass_report(
      outputs["pred"],
      outputs["label"],
      evaluation_class_names(self.config),
      missed_distance=self.config.eval.missed_distance,
    )
