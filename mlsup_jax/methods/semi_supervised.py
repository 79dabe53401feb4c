"""Semi-supervised segmentation on one base: a labelled and an unlabelled stream, pseudo-labels.

Data: the main stream is labelled (`image`, `label`); the stream `unlabelled` holds `image` (the
weak view: the stream's transforms, e.g. flips) and `image_strong` (a photometric view of the
same pixels). Both usually come from one source split by patient (`semi_supervised_split`).
Every step: the supervised loss (`config.loss.supervised`, CE + Dice) on the labelled batch, plus
`λ(t) ·` the unsupervised loss (`config.loss.unsupervised`, per pixel, weighted by a confidence
mask) of the student on the strong view against targets from the weak view, with
`λ(t) = semi.unsup_weight · exp(−5 (1 − t/T)²)` (UA-MT's ramp over `semi.rampup_steps`).
`semi.kind` picks where targets come from — the baselines users compare with:

* `labelled_only`: no unsupervised term (the unlabelled stream is read and ignored, so the data
  and the labelled batches are the same as for the other kinds);
* `mean_teacher` (Tarvainen & Valpola 2017): an EMA teacher's probabilities, every pixel
  (`pseudo_label_mse` by default);
* `uamt` (Yu et al. 2019, UA-MT): the EMA teacher's mean over `semi.num_passes` noisy passes,
  only where its entropy is below `τ(t) = (¾ + ¼ r(t)) ln K` (the PINT machinery,
  `ood/uncertainty.py`);
* `fixmatch` (Sohn et al. 2020): the student's own prediction on the weak view (no gradient),
  hard labels where its confidence is ≥ `semi.threshold` (`pseudo_label_ce` as the loss);
* `cps` (Chen et al. 2021, cross pseudo supervision): two students `a`, `b` with their own
  initialisations; each learns from the other's hard labels on the unlabelled batch (and both
  from the labelled one); `a` is evaluated;
* `action` (ACTION's fine-tuning objective, as its code has it): the EMA teacher's hard labels
  (`pseudo_label_ce`), every unlabelled image weighted by the fraction of its pixels the teacher
  predicts with confidence ≥ `semi.threshold` (0.97), CutMix, plus the regional contrast below;
* `arco` / `mona` (our reading of ARCO and MONA, which share one codebase): ACTION's base with
  the transformation-equivariance term (`semi.equivariance.weight ·`
  `losses/equivariance.equivariance_kl`: the student's prediction of a thin-plate-spline-warped
  weak view against the teacher's warped prediction, `nn/warps.py`); ARCO draws the contrast's
  queries by stratified groups (its config's `sampling=spatial`), MONA uniformly (MONA's code is
  ARCO's with `--func rand`). Both add the nearest-neighbour memory term
  (`semi.memory.weight ·` `losses/nearest_neighbours.nearest_neighbour_loss`): the student's
  pooled embedding of the mixed strong view is pulled towards the `semi.memory.topk` entries of a
  queue of `semi.memory.size` teacher embeddings nearest to the teacher's (mixed) embedding of
  the weak view — MSF's roles; the authors' code swaps them, which leaves the term without
  gradient. The queue is carried in `extra["memory"]`. MONA's three ideas, as we map them
  (its paper does not name the code terms): stronger augmentations = CutMix of the photometric
  strong views; nearest neighbours = the memory term; decomposition into anatomical features =
  the equivariance term with the pixel contrast. ARCO's code contrasts with U2PL's per-class
  memory bank; ours uses ReCo's regional contrast for both, so ARCO vs MONA isolates the
  sampling;
* `action_pp` (ACTION++): `action` plus the supervised adaptive contrastive loss on labelled
  pixels (`losses/targeted_contrast.py`: `semi.tsc.anchors_per_class` anchors per class, the EMA
  teacher's embeddings as positives and in a FIFO queue, uniform class centres matched by
  Hungarian assignment), weighted `semi.tsc.weight`; both contrasts' temperatures follow the
  cosine schedule (`semi.tsc.temperature_low` / `contrast_temperature_low` → `*_high`, a cycle
  every `semi.tsc.period` of the run). Its queue and centroids are carried state
  (`extra["tsc"]`).

**ACTION's pretraining** (`semi.pretrain_steps` > 0, the ACTION kinds): two distillation
stages before fine-tuning, each `pretrain_steps` long — `distill_encoder` (only the encoder's
parameters and the heads move) then `distill` (everything) — with the supervised loss on the
labelled batch plus `semi.distill.weight ·` the similarity KL (`losses/similarity_distillation`)
between the student (strong view) and the EMA teacher (weak view) over a queue of
`semi.distill.queue_size` teacher embeddings: of the pooled bottleneck (both stages) and of the
pooled output map (second stage), through `nn/distillation_heads.py` (T_s 0.1, T_t 0.01, queue
36, as the authors' 2-D runs). The parameters are then `{"net", "heads"}`; the queues are carried
in `extra["distill"]`; the fine-tuning stage starts from the pretrained student and teacher.

**Contrast** (`config.loss.contrast`, optional: weight 0 = off; needs `model.embedding_dim`): the
`regional_contrast` term over the student's pixel embeddings of the labelled batch (ground-truth
labels) and of the unlabelled batch (the targets' labels where their confidence exceeds
`semi.weak_threshold`), hard queries and active negatives (`losses/pixel_contrast.py`); its
`sampling` / `grid` / `antithetic` select ARCO's stratified draws (`losses/pixel_sampling.py`).

`semi.cutmix`: the strong views and their targets (and masks) are mixed pairwise between
unlabelled images (image i with i+1) inside one random box per pair, the box's area a uniform
fraction in `[semi.cutmix_min, semi.cutmix_max]` — fixed shapes, inside the jitted step.
Carried state: `extra["teacher"]` (the EMA kinds: Mean Teacher, UA-MT, ACTION, ACTION++),
`extra["tsc"]` (ACTION++'s queue), `extra["memory"]` (ARCO / MONA's nearest-neighbour queue),
`extra["distill"]` (ACTION's pretraining queues); CPS's second network is `params["b"]`.

Evaluation (the teacher for the EMA kinds, as their papers report; network `a` for CPS; the
student otherwise): Dice, IoU, HD95, HD, ASD per class and mean — per patient volume when the
examples carry `patient` and `slice` (`metrics/segmentation.multiclass_report` over the stacked
slices), else per slice — with distances in `eval.spacing` units (`(slice, row, column)`; None =
voxels). A structure missed in a volume has no distance: it is counted in `num_missed` and left
out of the distance means (`eval.missed_distance`), never scored 0.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mlsup_jax import losses
from mlsup_jax.core import teacher
from mlsup_jax.core.method import MAIN_STREAM, BatchKeys, Stage
from mlsup_jax.core.networks import apply_network, init_network
from mlsup_jax.core.optimizers import build_optimizer
from mlsup_jax.core.state import TrainState
from mlsup_jax.losses import targeted_contrast as tsc
from mlsup_jax.losses.class_centres import cosine_temperature, uniform_centres
from mlsup_jax.losses.consistency import class_probabilities
from mlsup_jax.losses.equivariance import equivariance_kl
from mlsup_jax.losses.nearest_neighbours import nearest_neighbour_loss, pooled_embedding
from mlsup_jax.losses.queues import enqueue
from mlsup_jax.losses.segmentation import weighted_pixel_mean
from mlsup_jax.methods.action_family import UNLABELLED, ActionFamilyTerms
from mlsup_jax.methods.segmentation import evaluation_class_names, predicted_classes
from mlsup_jax.metrics import segmentation
from mlsup_jax.nn import build_model
from mlsup_jax.nn.distillation_heads import DistillationHeads
from mlsup_jax.nn.warps import cutmix_boxes, mix
from mlsup_jax.ood import uncertainty

KINDS = (
  "labelled_only",
  "mean_teacher",
  "uamt",
  "fixmatch",
  "cps",
  "action",
  "action_pp",
  "arco",
  "mona",
)
# ACTION's fine-tuning base: EMA teacher hard labels, weighted by the confident share per image.
ACTION_BASE = ("action", "action_pp", "arco", "mona")
TEACHER_KINDS = ("mean_teacher", "uamt", *ACTION_BASE)  # carry an EMA teacher
CONTRAST_OUTPUTS = (
  "embedding",
  "contrast_labels",
  "contrast_probs",
  "contrast_valid",
  "contrast_key",
)
LOSS_ROLES = {
  "supervised": losses.LossRole(outputs=("logits",)),
  "unsupervised": losses.LossRole(outputs=("logits", "target_probs"), per_pixel=True, stream=None),
  "contrast": losses.LossRole(outputs=CONTRAST_OUTPUTS, stream=None, optional=True),
}


class SemiSupervisedMethod(ActionFamilyTerms):
  """The semi-supervised base and its baselines (module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    semi = config.semi
    if semi.kind not in KINDS:
      raise ValueError(f"Unknown semi.kind {semi.kind!r}; expected one of {KINDS}.")
    if not 0.0 <= float(semi.ema_decay) < 1.0:
      raise ValueError(f"semi.ema_decay must lie in [0, 1), got {semi.ema_decay}.")
    if not 0.0 < float(semi.cutmix_min) <= float(semi.cutmix_max) <= 1.0:
      raise ValueError("semi.cutmix_min / cutmix_max must satisfy 0 < min ≤ max ≤ 1.")
    losses.check_loss_config(config.loss, LOSS_ROLES)
    self.loss_roles = LOSS_ROLES
    self.contrast = bool(losses.active_terms(config.loss.contrast))
    if self.contrast and not config.model.get("embedding_dim", 0):
      raise ValueError(
        "config.loss.contrast has an active term but the network gives no pixel embedding: set "
        "config.model.embedding_dim (e.g. 64)."
      )
    if self.contrast and semi.kind == "cps":
      raise ValueError("semi.kind=cps does not take a contrastive term.")
    self.num_classes = int(config.model.num_classes)
    if semi.kind == "action_pp":
      if not config.model.get("embedding_dim", 0):
        raise ValueError("semi.kind=action_pp needs pixel embeddings: set model.embedding_dim.")
      # Computed once, outside any trace (an optimisation of its own, cached per (C, D)).
      self.centres = uniform_centres(self.num_classes, int(config.model.embedding_dim))
      anchors = self.num_classes * int(semi.tsc.anchors_per_class)
      if int(semi.tsc.queue_size) < anchors:
        raise ValueError(
          f"semi.tsc.queue_size={semi.tsc.queue_size} must hold one step's {anchors} anchors."
        )
    memory = semi.get("memory")
    self.memory = memory is not None and float(memory.weight) > 0
    if self.memory:
      if semi.kind not in ACTION_BASE:
        raise ValueError(f"semi.memory (the nearest-neighbour term) needs a kind {ACTION_BASE}.")
      if not config.model.get("embedding_dim", 0):
        raise ValueError("semi.memory pools the pixel embeddings: set model.embedding_dim.")
      if not 1 <= int(memory.topk) <= int(memory.size):
        raise ValueError(f"semi.memory.topk={memory.topk} must lie in [1, {memory.size}].")
    self.model = build_model(config.model, spatial_dims=config.data.spatial_dims)
    self.optimizer = build_optimizer(config.optimizer, config.train.num_steps)
    train = Stage("train", config.train.num_steps, self.train_step, self.optimizer)
    self.pretrain_steps = int(semi.get("pretrain_steps", 0))
    self.heads = None
    if self.pretrain_steps:
      if semi.kind not in ACTION_BASE:
        raise ValueError(f"semi.pretrain_steps (ACTION's distillation) needs a kind {ACTION_BASE}.")
      if not config.model.get("embedding_dim", 0):
        raise ValueError("ACTION's pretraining reads the U-Net's latent: set model.embedding_dim.")
      distill = semi.distill
      pooled = self.num_classes * int(distill.output_pool) ** int(config.data.spatial_dims)
      self.heads = DistillationHeads(int(distill.latent_dim), int(distill.output_pool), pooled)
      pretrain = build_optimizer(config.optimizer, self.pretrain_steps)
      # The first stage moves the encoder (and heads) only: the decoder's updates, weight decay
      # included, are zero.
      encoder_only = optax.multi_transform(
        {"train": pretrain, "frozen": optax.set_to_zero()}, self._encoder_labels
      )
      self.stages = (
        Stage("distill_encoder", self.pretrain_steps, self.distill_encoder_step, encoder_only),
        Stage("distill", self.pretrain_steps, self.distill_step, pretrain),
        train,
      )
    else:
      self.stages = (train,)
    self.batch_keys = BatchKeys(
      train={MAIN_STREAM: ("image", "label"), UNLABELLED: ("image", "image_strong")},
      eval=("image", "label"),
    ).with_losses(config.loss, LOSS_ROLES)

  # ------------------------------------------------------------------------------ state

  def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
    a_rng, b_rng = jax.random.split(rng)
    params, model_state = init_network(self.model, a_rng, example_batch["image"])
    if self.heads is not None:
      outputs = self.model.apply({"params": params}, example_batch["image"][:1], train=False)
      heads = self.heads.init(jax.random.fold_in(rng, 11), outputs["latent"], outputs["logits"])
      params = {"net": params, "heads": heads["params"]}
    extra = {}
    if self.config.semi.kind in TEACHER_KINDS:
      extra = {"teacher": jax.tree.map(jnp.copy, params)}
    if self.config.semi.kind == "action_pp":
      memory = tsc.init_memory(
        jax.random.fold_in(rng, 7),
        int(self.config.semi.tsc.queue_size),
        self.num_classes,
        int(self.config.model.embedding_dim),
      )
      extra["tsc"] = memory._asdict()
    if self.heads is not None:
      distill = self.config.semi.distill
      size = int(distill.queue_size)
      extra["distill"] = {
        "latent": jnp.zeros((size, int(distill.latent_dim)), jnp.float32),
        "output": jnp.zeros((size, self.heads.output_dim), jnp.float32),
        "filled": jnp.zeros((size,), bool),
        "pointer": jnp.zeros((), jnp.int32),
      }
    if self.memory:
      memory = self.config.semi.memory
      unlabelled = example_batch[UNLABELLED]["image"]
      if unlabelled.shape[0] > int(memory.size):
        raise ValueError(
          f"semi.memory.size={memory.size} must hold one step's {unlabelled.shape[0]} "
          "unlabelled images."
        )
      spatial = unlabelled.shape[1:-1]
      width = int(memory.pool) ** len(spatial) * int(self.config.model.embedding_dim)
      extra["memory"] = {
        "queue": jnp.zeros((int(memory.size), width), jnp.float32),
        "filled": jnp.zeros((int(memory.size),), bool),
        "pointer": jnp.zeros((), jnp.int32),
      }
    if self.config.semi.kind == "cps":
      if jax.tree.leaves(model_state):
        raise ValueError(
          "semi.kind=cps trains two networks with one non-trainable state: use a network "
          f"without BatchNorm (e.g. the U-Net), not {self.config.model.name!r}."
        )
      params = {"a": params, "b": init_network(self.model, b_rng, example_batch["image"])[0]}
    return TrainState.create(
      params=params, optimizer=self.stages[0].optimizer, model_state=model_state, extra=extra
    )

  def forward(self, params, state: TrainState, image: jax.Array, rng, train: bool = True):
    """`({"logits": [B, *S, K], "embedding"?: [B, *S, D]}, model_state)`."""
    rngs = None if rng is None else {"dropout": rng}
    if self.heads is not None:
      params = params["net"]
    outputs, model_state = apply_network(
      self.model, params, state.model_state, image, train=train, rngs=rngs
    )
    if not isinstance(outputs, dict):
      outputs = {"logits": outputs}
    return outputs, model_state

  def logits(self, params, state: TrainState, image: jax.Array, rng, train: bool = True):
    outputs, model_state = self.forward(params, state, image, rng, train)
    return outputs["logits"], model_state

  # ------------------------------------------------------------------------------ targets

  def targets(self, state: TrainState, unlabelled: dict, rng: jax.Array, step: jax.Array):
    """`(target_probs [B, *S, K'], confidence mask [B, *S])` from the weak view; no gradient."""
    return self.targets_and_embedding(state, unlabelled, rng, step)[:2]

  def targets_and_embedding(self, state, unlabelled: dict, rng: jax.Array, step: jax.Array):
    """`targets` plus the teacher's pixel embedding of the weak view `[B, *S, D]` (the ACTION
    kinds with embeddings; None otherwise)."""
    semi, image = self.config.semi, unlabelled["image"]
    kind = semi.kind
    embedding = None
    if kind == "mean_teacher":
      logits, _ = self.logits(state.extra["teacher"], state, image, rng, train=True)
      probs = class_probabilities(logits)
      mask = jnp.ones(probs.shape[:-1], jnp.float32)
    elif kind in ACTION_BASE:
      # ReCo / ACTION: every pixel of an image weighs its share of confident teacher pixels.
      outputs, _ = self.forward(state.extra["teacher"], state, image, rng, train=True)
      probs = class_probabilities(outputs["logits"])
      embedding = outputs.get("embedding")
      confident = (jnp.max(probs, axis=-1) >= float(semi.threshold)).astype(jnp.float32)
      axes = tuple(range(1, confident.ndim))
      mask = jnp.broadcast_to(jnp.mean(confident, axis=axes, keepdims=True), confident.shape)
    elif kind == "uamt":

      def predict(x, key):
        return class_probabilities(self.logits(state.extra["teacher"], state, x, key)[0])

      passes = uncertainty.perturbed_predictions(
        predict, image, rng, num_passes=int(semi.num_passes), noise_std=0.1, noise_clip=0.2
      )
      probs, entropy = uncertainty.mean_and_entropy(passes)
      ramp = teacher.sigmoid_rampup(step, int(semi.rampup_steps))
      tau = (0.75 + 0.25 * ramp) * math.log(probs.shape[-1])
      mask = (entropy < tau).astype(jnp.float32)
    elif kind == "fixmatch":
      logits, _ = self.logits(state.params, state, image, rng, train=False)
      probs = class_probabilities(logits)
      mask = (jnp.max(probs, axis=-1) >= float(semi.threshold)).astype(jnp.float32)
    else:
      raise ValueError(f"{kind} has no single target network.")
    return jax.lax.stop_gradient((probs, mask, embedding))

  # ------------------------------------------------------------------------------ losses

  def supervised(self, logits: jax.Array, batch: dict, role_metrics: dict, prefix: str = ""):
    loss, metrics = losses.weighted_sum(
      self.config.loss.supervised, outputs={"logits": logits}, batch=batch, role="supervised"
    )
    losses.merge_metrics(role_metrics, {prefix + k: v for k, v in metrics.items()}, "supervised")
    return loss

  def unsupervised(self, logits, target_probs, mask, metrics: dict, prefix: str = ""):
    per_pixel, term_metrics = losses.weighted_sum(
      self.config.loss.unsupervised,
      outputs={"logits": logits, "target_probs": target_probs},
      batch={},
      per_pixel=True,
      role="unsupervised",
    )
    losses.merge_metrics(metrics, {prefix + k: v for k, v in term_metrics.items()}, "unsup")
    return weighted_pixel_mean(per_pixel, mask)

  def contrastive(
    self, labelled: dict, batch: dict, unlabelled, key, metrics: dict, temperature=None
  ):
    """The contrast objective over the labelled (and unlabelled) pixel embeddings.

    Args:
      labelled: the student's outputs on the labelled images (`logits`, `embedding`).
      batch: the labelled batch (`label`).
      unlabelled: None, or `(student outputs on the mixed strong view, target probabilities)`.
      key: PRNG key for the draws.
      metrics: updated with the terms' metrics.
      temperature: a scheduled temperature for the terms (None: their own).
    """
    embedding = [labelled["embedding"]]
    labels = [batch["label"].astype(jnp.int32)]
    probs = [class_probabilities(labelled["logits"])]
    valid = [jnp.ones(batch["label"].shape, bool)]
    if unlabelled is not None:
      student, target = unlabelled
      embedding.append(student["embedding"])
      labels.append(jnp.argmax(target, axis=-1).astype(jnp.int32))
      probs.append(class_probabilities(student["logits"]))
      valid.append(jnp.max(target, axis=-1) > float(self.config.semi.weak_threshold))
    outputs = {
      "embedding": jnp.concatenate(embedding),
      "contrast_labels": jnp.concatenate(labels),
      "contrast_probs": jax.lax.stop_gradient(jnp.concatenate(probs)),
      "contrast_valid": jnp.concatenate(valid),
      "contrast_key": key,
    }
    if temperature is not None:
      outputs["contrast_temperature"] = temperature
    loss, term_metrics = losses.weighted_sum(
      self.config.loss.contrast, outputs=outputs, batch={}, role="contrast"
    )
    losses.merge_metrics(metrics, term_metrics, "contrast")
    return loss

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """`batch: image, label [B, *S]` + `unlabelled: image, image_strong` → state, metrics."""
    semi = self.config.semi
    target_rng, mix_rng, student_rng, contrast_rng, warp_rng = jax.random.split(rng, 5)
    unlabelled = batch[UNLABELLED]
    ramp = teacher.sigmoid_rampup(state.step, int(semi.rampup_steps))
    weight = float(semi.unsup_weight) * ramp
    strong = unlabelled["image_strong"]
    box = None
    if semi.cutmix:
      box = cutmix_boxes(
        mix_rng, strong.shape[0], strong.shape[1:-1], semi.cutmix_min, semi.cutmix_max
      )
      strong = mix(strong, box)
    if semi.kind == "cps":
      return self._cps_step(state, batch, strong, box, weight, student_rng)
    uses_targets = semi.kind != "labelled_only"
    neighbours = None
    if uses_targets:
      target, mask, taught = self.targets_and_embedding(state, unlabelled, target_rng, state.step)
      equivariance = self.equivariance_inputs(unlabelled["image"], target, warp_rng)
      if box is not None:
        target, mask = mix(target, box), mix(mask, box)
      if self.memory:
        # The teacher's embedding mixed as the student's input was: one vector per mixed image.
        neighbours = pooled_embedding(
          taught if box is None else mix(taught, box), int(semi.memory.pool)
        )

    anchors = None
    if semi.kind == "action_pp":
      anchors = self.tsc_anchors(state, batch, contrast_rng)
      schedule = semi.tsc
      num_steps = int(self.config.train.num_steps)
      tsc_temperature = cosine_temperature(
        state.step, num_steps, schedule.temperature_low, schedule.temperature_high, schedule.period
      )
      contrast_temperature = cosine_temperature(
        state.step,
        num_steps,
        schedule.contrast_temperature_low,
        schedule.temperature_high,
        schedule.period,
      )
    else:
      contrast_temperature = None

    def loss_fn(params):
      metrics = {}
      labelled, model_state = self.forward(params, state, batch["image"], student_rng)
      loss = self.supervised(labelled["logits"], batch, metrics)
      memory = None
      if anchors is not None:
        tsc_loss, memory = self.tsc_loss(labelled, anchors, state, tsc_temperature, metrics)
        loss = loss + float(semi.tsc.weight) * tsc_loss
      student = None
      if uses_targets:
        student_state = state.replace(model_state=model_state)
        student, model_state = self.forward(params, student_state, strong, student_rng)
        unsup = self.unsupervised(student["logits"], target, mask, metrics)
        metrics["unsupervised_loss"] = unsup
        metrics["confident_fraction"] = jnp.mean(mask)
        loss = loss + weight * unsup
      if neighbours is not None:
        queue = state.extra["memory"]
        nn_loss, nn_metrics = nearest_neighbour_loss(
          pooled_embedding(student["embedding"], int(semi.memory.pool)),
          neighbours,
          queue["queue"],
          queue["filled"],
          int(semi.memory.topk),
        )
        losses.merge_metrics(metrics, {"nearest_neighbour": nn_loss, **nn_metrics}, "memory")
        loss = loss + float(semi.memory.weight) * nn_loss
      if uses_targets and equivariance is not None:
        student_state = state.replace(model_state=model_state)
        warped, model_state = self.logits(params, student_state, equivariance[0], student_rng)
        eq_loss, eq_kept = equivariance_kl(
          warped, equivariance[1], float(semi.equivariance.threshold)
        )
        metrics["equivariance_kl"] = eq_loss
        metrics["equivariance_pixels"] = eq_kept
        loss = loss + float(semi.equivariance.weight) * eq_loss
      if self.contrast:
        unlabelled_part = None if student is None else (student, target)
        loss = loss + self.contrastive(
          labelled, batch, unlabelled_part, contrast_rng, metrics, contrast_temperature
        )
      return loss, (metrics, model_state, memory)

    (loss, (metrics, model_state, memory)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params
    )
    gamma = teacher.ema_decay(state.step, float(semi.ema_decay))
    state = state.apply_gradients(grads=grads, optimizer=self.optimizer, model_state=model_state)
    if semi.kind in TEACHER_KINDS:
      extra = {
        **state.extra,
        "teacher": teacher.ema_update(state.extra["teacher"], state.params, gamma),
      }
      if memory is not None:
        extra["tsc"] = memory._asdict()
      if neighbours is not None:
        extra["memory"] = self._enqueue_memory(state.extra["memory"], neighbours)
      state = state.replace(extra=extra)
    losses.merge_metrics(metrics, {"loss": loss, "unsupervised_weight": weight}, "semi")
    return state, metrics

  @staticmethod
  def _enqueue_memory(memory: dict, items: jax.Array) -> dict:
    """The nearest-neighbour queue after writing this step's teacher embeddings."""
    queue, pointer = enqueue(memory["queue"], memory["pointer"], items)
    filled, _ = enqueue(memory["filled"], memory["pointer"], jnp.ones(items.shape[:1], bool))
    return {"queue": queue, "filled": filled, "pointer": pointer}

  def _cps_step(self, state, batch, strong, box, weight, rng):
    """Cross pseudo supervision: each network learns from the other's hard labels."""
    a_rng, b_rng = jax.random.split(rng)

    def loss_fn(params):
      metrics, total = {}, 0.0
      logits_u = {}
      for name, key in (("a", a_rng), ("b", b_rng)):
        logits, _ = self.logits(params[name], state, batch["image"], key)
        total = total + self.supervised(logits, batch, metrics, prefix=f"{name}/")
        logits_u[name], _ = self.logits(params[name], state, strong, key)
      for name, other in (("a", "b"), ("b", "a")):
        target = jax.lax.stop_gradient(class_probabilities(logits_u[other]))
        mask = jnp.ones(target.shape[:-1], jnp.float32)
        unsup = self.unsupervised(logits_u[name], target, mask, metrics, prefix=f"{name}/")
        total = total + weight * unsup
      return total, metrics

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, optimizer=self.optimizer)
    del box  # The mixed strong view is already in `strong`; CPS's targets are computed on it.
    losses.merge_metrics(metrics, {"loss": loss, "unsupervised_weight": weight}, "semi")
    return state, metrics

  # ------------------------------------------------------------------------------ evaluation

  def eval_params(self, state: TrainState):
    kind = self.config.semi.kind
    if kind in TEACHER_KINDS:
      return state.extra["teacher"]
    if kind == "cps":
      return state.params["a"]
    return state.params

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    del rng
    logits, _ = self.logits(self.eval_params(state), state, batch["image"], None, train=False)
    outputs = {"pred": predicted_classes(logits), "label": batch["label"]}
    for key in ("patient", "slice"):
      if key in batch:
        outputs[key] = batch[key]
    return outputs

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    del workdir
    pred, label = outputs["pred"], outputs["label"]
    spacing = self.config.eval.get("spacing")
    if "patient" in outputs and "slice" in outputs:
      pred, label = segmentation.stack_patient_volumes(
        pred, label, outputs["patient"], outputs["slice"]
      )
    elif spacing is not None:
      spacing = tuple(spacing)[-(pred.ndim - 1) :]  # Per slice: the in-plane spacing.
    return segmentation.multiclass_report(
      pred,
      label,
      evaluation_class_names(self.config),
      spacing=None if spacing is None else tuple(float(v) for v in spacing),
      missed_distance=self.config.eval.missed_distance,
    )
