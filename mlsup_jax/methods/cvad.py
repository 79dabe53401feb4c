"""CVAD: cascade-VAE-based anomaly detector (thesis §4.2; spec S6).

Two non-adversarial stages, one state (`params = {generator, discriminator}`):

1. `cvae` — the cascade VAE (`nn/cvae.py`: a primary VAE and a branch VAE on its intermediate
   features, I′ = ½(I′1 + I′2)) learns to reconstruct ID images (`loss.cvae`: MSE of I′ plus both
   KL terms, normalised as in the authors' code by default).
2. `discriminator` — the generator is frozen (eval mode: z = μ); the discriminator learns real
   ID images (label 0) vs their reconstructions I′ and, when `model.perturb_scale > 0`, the
   decodings I″ of perturbed latents (label 1; the thesis's "minor disturbance", unspecified
   there and absent from the code — our assumption, documented in `nn/cvae.py`). Real and fake
   images go through the discriminator as one batch, so its BatchNorm statistics see both.

Evaluation returns per-image components — the CVAE loss `s1` of the image (MSE + normalised
KL, as the code's score), its plain reconstruction error, and the discriminator's probability
`p` on the original image — and reports (`ood/detection_protocol.py`, `eval.protocol`):

* `cvad` (Eq. 4.8 with the min–max the text describes): ½·(minmax(s1) + p);
* `cvad_sum` (thesis Ch. 5's MedShift variant): s1 + p;
* `cascade_vae` (the pchVAE baseline: the generator alone), `discriminator` (p alone).

The branch encoder E2 is the thesis's stride-2 conv by default (`model.branch_encoder="conv"`);
the public code's direct flatten (`"fc"`, ≈ 0.7 B parameters at 256²) is available.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from mlsup_jax import losses
from mlsup_jax.core.method import MAIN_STREAM, BatchKeys, Stage
from mlsup_jax.core.optimizers import build_optimizer, masked_optimizer
from mlsup_jax.core.state import TrainState
from mlsup_jax.losses import anomaly
from mlsup_jax.nn.cvae import CascadeVAE, Discriminator
from mlsup_jax.ood import detection_protocol

LOSS_ROLES = {
  "cvae": losses.LossRole(
    outputs=(
      "reconstruction",
      "reconstruction_primary",
      "reconstruction_branch",
      "mu1",
      "logvar1",
      "mu2",
      "logvar2",
    )
  ),
  "discriminator": losses.LossRole(outputs=("real_logit", "fake_logit")),
}


class CvadMethod:
  """CVAD's two training stages and its per-image scores (module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    m, t = config.model, config.train
    losses.check_loss_config(config.loss, LOSS_ROLES)
    self.loss_roles = LOSS_ROLES
    self.batch_keys = BatchKeys(train={MAIN_STREAM: ("image",)}, eval=("image", "ood")).with_losses(
      config.loss, LOSS_ROLES
    )
    dtype = jnp.dtype(m.dtype)
    self.generator = CascadeVAE(
      base_width=m.base_width,
      e11_depth=m.e11_depth,
      e12_depth=m.e12_depth,
      latent_dim=m.latent_dim,
      branch_encoder=m.branch_encoder,
      perturb_scale=m.perturb_scale,
      dtype=dtype,
    )
    self.discriminator = Discriminator(
      base_width=m.base_width,
      depth=m.e11_depth + m.e12_depth,
      hidden_dim=m.discriminator_hidden_dim,
      dtype=dtype,
    )
    self.generator_optimizer = masked_optimizer(
      build_optimizer(config.optimizer.generator, t.cvae_steps), ("generator",)
    )
    discriminator_optimizer = masked_optimizer(
      build_optimizer(config.optimizer.discriminator, t.discriminator_steps), ("discriminator",)
    )
    self.stages = (
      Stage("cvae", t.cvae_steps, self.cvae_step, self.generator_optimizer),
      Stage(
        "discriminator",
        t.discriminator_steps,
        self.discriminator_step(discriminator_optimizer),
        discriminator_optimizer,
      ),
    )

  def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
    gen_rng, disc_rng, sample_rng = jax.random.split(rng, 3)
    image = example_batch["image"]
    gen = self.generator.init({"params": gen_rng, "sample": sample_rng}, image, train=False)
    disc = self.discriminator.init(disc_rng, image, train=False)
    return TrainState.create(
      params={"generator": gen["params"], "discriminator": disc["params"]},
      optimizer=self.generator_optimizer,
      model_state={
        "generator": {"batch_stats": gen["batch_stats"]},
        "discriminator": {"batch_stats": disc["batch_stats"]},
      },
    )

  def _generate(self, state: TrainState, params, image, rng, train: bool, perturb: bool = False):
    variables = {"params": params, **state.model_state["generator"]}
    if not train:
      outputs = self.generator.apply(
        variables, image, train=False, perturb=perturb, rngs={"sample": rng}
      )
      return outputs, state.model_state["generator"]
    return self.generator.apply(
      variables, image, train=True, rngs={"sample": rng}, mutable=["batch_stats"]
    )

  def cvae_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """`batch: image [B, H, W, C]` in [0, 1] → a generator update (`loss.cvae`)."""

    def loss_fn(gen_params):
      outputs, updates = self._generate(state, gen_params, batch["image"], rng, train=True)
      loss, metrics = losses.weighted_sum(
        self.config.loss.cvae, outputs=outputs, batch=batch, role="cvae"
      )
      return loss, (updates, metrics)

    (loss, (updates, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params["generator"]
    )
    state = state.apply_subtree_gradients(
      "generator",
      grads=grads,
      optimizer=self.generator_optimizer,
      model_state={**state.model_state, "generator": updates},
    )
    return state, {"loss": loss, **metrics}

  def discriminator_step(self, optimizer):
    """Real ID images (0) vs the frozen generator's I′ (and I″) (1) → a discriminator update."""

    def step(state: TrainState, batch: dict, rng: jax.Array):
      image = batch["image"]
      perturb = self.config.model.perturb_scale > 0
      fakes, _ = self._generate(
        state, state.params["generator"], image, rng, train=False, perturb=perturb
      )
      fake = [fakes["reconstruction"]] + ([fakes["perturbed"]] if perturb else [])
      everything = jax.lax.stop_gradient(jnp.concatenate([image, *fake], axis=0))
      b = image.shape[0]

      def loss_fn(disc_params):
        logits, updates = self.discriminator.apply(
          {"params": disc_params, **state.model_state["discriminator"]},
          everything,
          train=True,
          mutable=["batch_stats"],
        )
        outputs = {"real_logit": logits[:b], "fake_logit": logits[b:]}
        loss, metrics = losses.weighted_sum(
          self.config.loss.discriminator, outputs=outputs, batch=batch, role="discriminator"
        )
        return loss, (updates, metrics)

      (loss, (updates, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params["discriminator"]
      )
      state = state.apply_subtree_gradients(
        "discriminator",
        grads=grads,
        optimizer=optimizer,
        model_state={**state.model_state, "discriminator": updates},
      )
      return state, {"loss": loss, **metrics}

    return step

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    """Per-image components: `cvae_loss`, `reconstruction_error`, `probability`, `ood` [B]."""
    image = batch["image"]
    outputs, _ = self._generate(state, state.params["generator"], image, rng, train=False)
    logits = self.discriminator.apply(
      {"params": state.params["discriminator"], **state.model_state["discriminator"]},
      image,
      train=False,
    )
    cvae_hparams = losses.term_hparams(self.config.loss.cvae, "cvae")
    return {
      "cvae_loss": anomaly.cvae_example_loss(outputs, image, **cvae_hparams),
      "reconstruction_error": anomaly.reconstruction_error(outputs["reconstruction"], image),
      "probability": jax.nn.sigmoid(logits),
      **detection_protocol.image_labels(batch),
    }

  def score_functions(self) -> dict:
    """Score name → `(components, reference) -> scores` (module docstring)."""
    return {
      "cvad": lambda c, r: (
        0.5
        * (detection_protocol.minmax_normalised(c["cvae_loss"], r["cvae_loss"]) + c["probability"])
      ),
      "cvad_sum": lambda c, r: c["cvae_loss"] + c["probability"],
      "cascade_vae": lambda c, r: c["cvae_loss"],
      "discriminator": lambda c, r: c["probability"],
    }

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    return detection_protocol.report(
      outputs, self.score_functions(), self.config.eval, workdir, "cvad"
    )
