"""README's loss-swap recipe, applied to every method's smoke config.

The recipe: write a loss `fn(*, outputs, batch, **hparams)`, add one `LossTerm` line to `LOSSES`,
and switch it on with config overrides only. Here the new term reads whatever the objective
produces (it declares no outputs, so every objective lists it), and for each method it is
switched on in one objective through the command-line parser a launch script uses
(`launch.common.load_config`), trained for a few steps and evaluated. The logged metrics show the
term, and `config.json` records the hyperparameter given on the command line.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest

from launch.common import load_config
from mlsup_jax import losses
from mlsup_jax.core import trainer
from mlsup_jax.losses import LOSSES

pytestmark = pytest.mark.slow

TERM = "test_output_energy"


def output_energy(*, outputs, batch, scale=1.0, reduction="mean"):
  """`scale · mean(x²)` over the last axis of the first floating output (sorted by key)."""
  del batch
  arrays = {k: v for k, v in outputs.items() if isinstance(v, jax.Array)}
  name = sorted(k for k, v in arrays.items() if jnp.issubdtype(v.dtype, jnp.floating))[0]
  x = jnp.asarray(outputs[name], jnp.float32)
  per_item = scale * jnp.mean(jnp.square(x), axis=-1) if x.ndim > 1 else scale * jnp.square(x)
  mean = jnp.mean(per_item)
  if reduction == "none":
    return per_item, {TERM: mean}
  return mean, {TERM: mean}


# (config, the objective that gets the term ("" = config.loss itself), step overrides).
CASES = [
  ("segmentation.py:smoke", "", ["--config.train.num_steps=2"]),
  ("scunet.py:smoke", "", ["--config.train.num_steps=2"]),
  ("maxquery.py:smoke", "", ["--config.train.num_steps=2"]),
  ("maxquery.py:smoke,variant=unet", "", ["--config.train.num_steps=2"]),
  ("mcpm.py:smoke", "meta", ["--config.train.num_steps=2"]),
  ("mcpm.py:smoke", "train", ["--config.train.num_steps=2"]),
  ("pint.py:smoke", "pseudo_label", ["--config.train.num_steps=2"]),
  (
    "tend.py:smoke",
    "classifier",
    [f"--config.train.{s}_steps=1" for s in ("autoencoder", "warmup", "centre", "margin")],
  ),
  (
    "cvad.py:smoke",
    "cvae",
    ["--config.train.cvae_steps=2", "--config.train.discriminator_steps=1"],
  ),
  ("reconstruction_detector.py:smoke,network=vae", "", ["--config.train.num_steps=2"]),
  ("image_classifier.py:smoke", "", ["--config.train.num_steps=2"]),
]


@pytest.fixture
def new_term():
  LOSSES.register(TERM, losses.LossTerm(output_energy))  # The recipe's one table line.
  yield
  LOSSES.unregister(TERM)


@pytest.mark.parametrize("config, role, steps", CASES, ids=[f"{c}-{r}" for c, r, _ in CASES])
def test_a_new_loss_term_is_one_table_line_and_config_overrides(
  tmp_path, new_term, config, role, steps
):
  path = f"--config.loss.{role}.{TERM}" if role else f"--config.loss.{TERM}"
  args = [
    f"--config=configs/{config}",
    f"{path}.weight=0.01",
    f"{path}.scale=2.0",
    "--config.train.log_every=1",
    "--config.train.tensorboard=False",
    *steps,
  ]
  resolved = load_config(args)
  trainer.train_and_evaluate(resolved, str(tmp_path), devices=jax.devices()[:1])

  saved = json.loads((tmp_path / "config.json").read_text())
  section = saved["loss"][role] if role else saved["loss"]
  assert section[TERM] == {"weight": 0.01, "scale": 2.0}
  logged = set()
  for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
    logged |= set(json.loads(line))
  # The term's weighted value and its own metric, under the objective's name.
  assert (f"train/loss/{role}/{TERM}" if role else f"train/loss/{TERM}") in logged, sorted(logged)
  assert (f"train/{role}/{TERM}" if role else f"train/{TERM}") in logged
