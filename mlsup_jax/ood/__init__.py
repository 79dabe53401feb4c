"""Out-of-distribution scoring: per-pixel scores (MaxQuery, MSP, MaxLogit, energy, MC-Dropout
entropy, SML) in `jax.numpy`, and the host-side SML statistics accumulator.

Every score is "higher = more OOD"; the metrics live in `mlsup_jax.metrics.ood`.
"""

from mlsup_jax.ood.scores import (
  LEVELS,
  PIXEL_SCORES,
  SOFTMAXES,
  category_logits,
  energy,
  max_logit,
  maxquery,
  msp,
  predictive_entropy,
  semantic_probabilities,
  standardized_max_logit,
)
from mlsup_jax.ood.sml import SmlStatistics

__all__ = [
  "LEVELS",
  "PIXEL_SCORES",
  "SOFTMAXES",
  "SmlStatistics",
  "category_logits",
  "energy",
  "max_logit",
  "maxquery",
  "msp",
  "predictive_entropy",
  "semantic_probabilities",
  "standardized_max_logit",
]
