"""Losses chosen by name from `config.loss` (DESIGN §2).

`config.loss.terms` names the terms a method sums, `config.loss.weights` their weights, and
`config.loss.<name>` (optional) the keyword hyperparameters of each. To try a new loss in a
fork: write `my_loss(*, outputs, batch, **hparams) -> (scalar, metrics)`, add one line to
`LOSSES`, and run with `--config.loss.terms='("my_loss",)'` — no trainer or method changes.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from mlsup_jax.core.registry import Registry
from mlsup_jax.losses import segmentation

LOSSES = Registry(
  "loss",
  {
    "soft_dice": segmentation.soft_dice,
    "cross_entropy": segmentation.cross_entropy,
    # The import is lazy: mask_transformer imports this module.
    "query_distribution": "mlsup_jax.losses.mask_transformer:query_distribution",
    "reconstruction_mse": "mlsup_jax.losses.anomaly:reconstruction_mse",
    "classification_bce": "mlsup_jax.losses.anomaly:classification_bce",
    "tend_margin": "mlsup_jax.losses.anomaly:tend_margin",
    "vae": "mlsup_jax.losses.anomaly:vae_loss",
    "cvae": "mlsup_jax.losses.anomaly:cvae_loss",
    "discriminator_bce": "mlsup_jax.losses.anomaly:discriminator_bce",
  },
)


def weighted_sum(loss_config: ml_collections.ConfigDict, *, outputs: dict, batch: dict):
  """Sums `weight × term(outputs, batch, **hparams)` over `loss_config.terms`.

  Returns:
    `(total, metrics)`: metrics hold each term's value as `loss/<name>` plus the terms' own
    metrics.
  """
  terms, weights = tuple(loss_config.terms), tuple(loss_config.weights)
  if len(terms) != len(weights) or not terms:
    raise ValueError(
      f"config.loss.terms {terms} and weights {weights} must be non-empty and match."
    )
  total = jnp.zeros((), jnp.float32)
  metrics = {}
  for name, weight in zip(terms, weights, strict=True):
    hparams = loss_config[name].to_dict() if name in loss_config else {}
    value, term_metrics = LOSSES.get(name)(outputs=outputs, batch=batch, **hparams)
    total = total + weight * value
    metrics[f"loss/{name}"] = value
    metrics.update(term_metrics)
  return total, metrics
