"""ACTION-family terms of the semi-supervised method: ACTION's distillation pretraining, ARCO /
MONA's equivariance inputs and ACTION++'s targeted contrast.

`ActionFamilyTerms` is mixed into `methods/semi_supervised.SemiSupervisedMethod`, whose module
docstring describes the objectives; it reads the method's `config`, `forward`, `supervised`,
`heads`, `stages`, `num_classes` and `centres`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlsup_jax import losses
from mlsup_jax.core import teacher
from mlsup_jax.core.state import TrainState
from mlsup_jax.losses import targeted_contrast as tsc
from mlsup_jax.losses.pixel_sampling import sample_pixels
from mlsup_jax.losses.queues import enqueue
from mlsup_jax.losses.similarity_distillation import similarity_kl
from mlsup_jax.nn.warps import bilinear_sample, random_tps_coords

UNLABELLED = "unlabelled"


class ActionFamilyTerms:
  """The ACTION / ACTION++ / ARCO / MONA pieces of the semi-supervised step (module docstring)."""

  # ------------------------------------------------------------------------------ pretraining

  def _encoder_labels(self, params):
    """Labels "train" for the U-Net encoder's parameters and the heads, "frozen" for the rest."""
    levels = len(self.config.model.features)
    encoder = {f"ConvNormAct_{i}" for i in range(2 * levels)}  # two blocks per level

    def label(path, _):
      names = [getattr(k, "key", str(k)) for k in path]
      if names[0] == "heads":
        return "train"
      in_encoder = len(names) > 2 and names[1] == "UNetBackbone_0" and names[2] in encoder
      return "train" if in_encoder else "frozen"

    return jax.tree_util.tree_map_with_path(label, params)

  def _distill(self, state: TrainState, batch: dict, rng: jax.Array, encoder_only: bool):
    """One distillation step (module docstring, ACTION's pretraining)."""
    semi, distill = self.config.semi, self.config.semi.distill
    unlabelled = batch[UNLABELLED]
    student_rng, _ = jax.random.split(rng)
    teacher_params = state.extra["teacher"]
    taught, _ = self.forward(teacher_params, state, unlabelled["image"], None)
    heads = self.heads
    teacher_heads = {"params": teacher_params["heads"]}
    t_latent = heads.apply(teacher_heads, taught["latent"], method=heads.latent)
    t_output = heads.apply(teacher_heads, taught["logits"], method=heads.output)
    t_latent, t_output = jax.lax.stop_gradient((t_latent, t_output))
    queue = state.extra["distill"]
    temperatures = {
      "student_temperature": float(distill.student_temperature),
      "teacher_temperature": float(distill.teacher_temperature),
    }

    def loss_fn(params):
      metrics = {}
      labelled, model_state = self.forward(params, state, batch["image"], student_rng)
      loss = self.supervised(labelled["logits"], batch, metrics)
      student_state = state.replace(model_state=model_state)
      student, model_state = self.forward(params, student_state, unlabelled["image_strong"], None)
      variables = {"params": params["heads"]}
      s_latent = heads.apply(variables, student["latent"], method=heads.latent)
      s_latent = heads.apply(variables, s_latent, method=heads.predict)
      kl = similarity_kl(s_latent, t_latent, queue["latent"], queue["filled"], **temperatures)
      metrics["distill/kl_latent"] = kl
      if not encoder_only:
        s_output = heads.apply(variables, student["logits"], method=heads.output)
        s_output = heads.apply(variables, s_output, method=heads.predict_output)
        kl_output = similarity_kl(
          s_output, t_output, queue["output"], queue["filled"], **temperatures
        )
        metrics["distill/kl_output"] = kl_output
        kl = kl + kl_output
      loss = loss + float(distill.weight) * kl
      return loss, (metrics, model_state)

    (loss, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    stage_optimizer = self.stages[0 if encoder_only else 1].optimizer
    gamma = teacher.ema_decay(state.step, float(semi.ema_decay))
    state = state.apply_gradients(grads=grads, optimizer=stage_optimizer, model_state=model_state)
    new_queue = dict(queue)
    new_queue["latent"], pointer = enqueue(queue["latent"], queue["pointer"], t_latent)
    new_queue["output"], _ = enqueue(queue["output"], queue["pointer"], t_output)
    new_queue["filled"], _ = enqueue(
      queue["filled"], queue["pointer"], jnp.ones(t_latent.shape[:1], bool)
    )
    new_queue["pointer"] = pointer
    extra = {
      **state.extra,
      "teacher": teacher.ema_update(state.extra["teacher"], state.params, gamma),
      "distill": new_queue,
    }
    losses.merge_metrics(metrics, {"loss": loss}, "distill")
    return state.replace(extra=extra), metrics

  def distill_encoder_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """ACTION's first pretraining stage: the encoder and the latent distillation."""
    return self._distill(state, batch, rng, encoder_only=True)

  def distill_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """ACTION's second pretraining stage: everything, latent and output distillation."""
    return self._distill(state, batch, rng, encoder_only=False)

  def equivariance_inputs(self, image: jax.Array, target: jax.Array, key: jax.Array):
    """`(warped weak images, warped target probabilities)` under one random thin-plate spline
    per image, or None when the equivariance term is off."""
    semi = self.config.semi
    if semi.kind not in ("arco", "mona") or not float(semi.equivariance.weight):
      return None
    if image.ndim != 4:
      raise ValueError("The equivariance term's thin-plate splines are 2-D only.")
    batch, height, width, _ = image.shape
    coords = random_tps_coords(
      key, batch, height, width, int(semi.equivariance.grid), float(semi.equivariance.sigma)
    )
    return bilinear_sample(image, coords), bilinear_sample(target, coords)

  def tsc_anchors(self, state: TrainState, batch: dict, key: jax.Array) -> dict:
    """ACTION++'s anchors: per class, `anchors_per_class` labelled pixels drawn uniformly over
    the batch, with the EMA teacher's embeddings of them (no gradient).

    Returns:
      `{"index": [C·A] flat pixel indices, "label": [C·A], "weight": [C·A], "teacher": [C·A, D]}`.
    """
    per_class = int(self.config.semi.tsc.anchors_per_class)
    labels = batch["label"].astype(jnp.int32)
    members = labels[None] == jnp.arange(self.num_classes).reshape((-1,) + (1,) * labels.ndim)
    keys = jax.random.split(key, self.num_classes)
    index, weight = jax.vmap(lambda k, m: sample_pixels(k, m, per_class, "uniform", batch_dims=1))(
      keys, members
    )
    taught, _ = self.forward(state.extra["teacher"], state, batch["image"], None, train=True)
    teacher_emb = taught["embedding"].reshape(-1, taught["embedding"].shape[-1])
    index = index.reshape(-1)
    return {
      "index": index,
      "label": jnp.repeat(jnp.arange(self.num_classes), per_class),
      "weight": weight.reshape(-1),
      "teacher": jax.lax.stop_gradient(teacher_emb[index]),
    }

  def tsc_loss(self, labelled: dict, anchors: dict, state: TrainState, temperature, metrics):
    """The targeted supervised contrast of the student's anchor embeddings; `(loss, memory)`."""
    student = labelled["embedding"].reshape(-1, labelled["embedding"].shape[-1])[anchors["index"]]
    memory = tsc.ContrastMemory(**state.extra["tsc"])
    centres = jnp.asarray(self.centres, jnp.float32)
    loss, memory, term_metrics = tsc.targeted_contrast(
      student,
      anchors["teacher"],
      anchors["label"],
      anchors["weight"],
      memory,
      centres,
      temperature,
      target_weight=float(self.config.semi.tsc.target_weight),
    )
    losses.merge_metrics(
      metrics, {"tsc": loss, "tsc_temperature": temperature, **term_metrics}, "tsc"
    )
    return loss, memory
