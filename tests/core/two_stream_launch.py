"""`launch.train` with a test method that reads a labelled and an unlabelled stream.

`TwoStreamTeacher` is a minimal mean teacher: cross-entropy on the labelled batch, and on the
unlabelled batch the squared distance between the student's probabilities on the strong view and
the EMA teacher's on the image; the teacher lives in `state.extra`. Registered as
`test_two_streams`; `configs`-style `get_config` in `two_stream_config.py`. Checkpoint saves
pause as in `slow_save_launch.py`, so a test can SIGKILL the run between two checkpoints.
"""

import jax
import jax.numpy as jnp
import slow_save_launch  # noqa: F401  (pauses after every checkpoint save)
from absl import app

from launch import train
from mlsup_jax.core import teacher
from mlsup_jax.core.method import BatchKeys, Stage
from mlsup_jax.core.networks import apply_network, init_network
from mlsup_jax.core.optimizers import build_optimizer
from mlsup_jax.core.state import TrainState
from mlsup_jax.losses.segmentation import cross_entropy
from mlsup_jax.methods import METHODS
from mlsup_jax.metrics import segmentation
from mlsup_jax.nn import build_model


class TwoStreamTeacher:
  def __init__(self, config):
    self.config = config
    self.model = build_model(config.model, spatial_dims=config.data.spatial_dims)
    self.optimizer = build_optimizer(config.optimizer, config.train.num_steps)
    self.stages = (Stage("train", config.train.num_steps, self.train_step, self.optimizer),)
    self.batch_keys = BatchKeys(
      train={"": ("image", "label"), "unlabelled": ("image", "image_strong")},
      eval=("image", "label"),
    )

  def init(self, rng, example_batch):
    params, model_state = init_network(self.model, rng, example_batch["image"])
    return TrainState.create(
      params=params,
      optimizer=self.optimizer,
      model_state=model_state,
      extra={"teacher": jax.tree.map(jnp.copy, params)},
    )

  def _logits(self, params, state, image, train, rng=None):
    rngs = None if rng is None else {"dropout": rng}
    return apply_network(self.model, params, state.model_state, image, train=train, rngs=rngs)[0]

  def train_step(self, state, batch, rng):
    unlabelled = batch["unlabelled"]
    target = jax.nn.softmax(self._logits(state.extra["teacher"], state, unlabelled["image"], False))

    def loss_fn(params):
      supervised, _ = cross_entropy(
        outputs={"logits": self._logits(params, state, batch["image"], True, rng)}, batch=batch
      )
      student = jax.nn.softmax(self._logits(params, state, unlabelled["image_strong"], True, rng))
      consistency = jnp.mean(jnp.square(student - jax.lax.stop_gradient(target)))
      return supervised + consistency, (supervised, consistency)

    (loss, (supervised, consistency)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params
    )
    gamma = teacher.ema_decay(state.step, 0.99)
    state = state.apply_gradients(grads=grads, optimizer=self.optimizer)
    state = state.replace(
      extra={"teacher": teacher.ema_update(state.extra["teacher"], state.params, gamma)}
    )
    return state, {"loss": loss, "supervised": supervised, "consistency": consistency}

  def eval_step(self, state, batch, rng):
    del rng
    logits = self._logits(state.extra["teacher"], state, batch["image"], False)
    return {"pred": jnp.argmax(logits, -1), "label": batch["label"]}

  def evaluate(self, outputs, workdir=None):
    del workdir
    return segmentation.multiclass_report(outputs["pred"], outputs["label"], ("bg", "liver"))


METHODS.register("test_two_streams", TwoStreamTeacher, replace=True)

if __name__ == "__main__":
  app.run(train.main)
