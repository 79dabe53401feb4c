"""Losses chosen by name from `config.loss` (the layout: `losses/layout.py`).

`LOSSES` is the one table of loss terms. Each term is a pure function
`loss(*, outputs, batch, **hparams) -> (value, metrics)`; a per-pixel term also takes
`reduction` ("mean" → scalar, "none" → `[B, *S]` map). To try a new loss in a fork:

1. write it, e.g. `def focal_dice(*, outputs, batch, gamma=2.0): ...` (every hyperparameter
   keyword-only with a default);
2. add one line here: `"focal_dice": LossTerm(focal_dice, outputs=("logits",), batch=("label",))`;
3. run with `--config.loss.focal_dice.weight=0.5 --config.loss.focal_dice.gamma=3` — every
   config whose objective provides `logits` now lists the term (weight 0 = off) with its
   defaults. No trainer or method changes.
"""

from __future__ import annotations

from mlsup_jax.losses.layout import (
  LossRole,
  LossTerm,
  active_terms,
  applicable_terms,
  batch_keys,
  check_loss_config,
  loss_section,
  merge_metrics,
  role_config,
  roles_section,
  term_hparams,
  weighted_sum,
)
from mlsup_jax.registry import Registry

_SEG = "mlsup_jax.losses.segmentation"
_ANOMALY = "mlsup_jax.losses.anomaly"
_PARTIAL = "mlsup_jax.losses.partial_labels"
_RETRIEVAL = "mlsup_jax.losses.retrieval"
_METRIC = "mlsup_jax.losses.metric_learning"
_DETECTION = "mlsup_jax.losses.detection"

# Term name → `LossTerm(function, outputs it reads, batch keys it reads)`.
LOSSES = Registry(
  "loss",
  {
    "cross_entropy": LossTerm(f"{_SEG}:cross_entropy", ("logits",), ("label",)),
    "soft_dice": LossTerm(f"{_SEG}:soft_dice", ("logits",), ("label",)),
    "query_distribution": LossTerm(
      "mlsup_jax.losses.mask_transformer:query_distribution", ("mask_logits",), ("label",)
    ),
    "pseudo_label_mse": LossTerm(
      "mlsup_jax.losses.consistency:pseudo_label_mse", ("logits", "target_probs")
    ),
    "pseudo_label_ce": LossTerm(
      "mlsup_jax.losses.consistency:pseudo_label_ce", ("logits", "target_probs")
    ),
    "regional_contrast": LossTerm(
      "mlsup_jax.losses.pixel_contrast:regional_contrast_term",
      ("embedding", "contrast_labels", "contrast_probs", "contrast_valid", "contrast_key"),
    ),
    "reconstruction_mse": LossTerm(
      f"{_ANOMALY}:reconstruction_mse", ("reconstruction",), ("image",)
    ),
    "classification_bce": LossTerm(f"{_ANOMALY}:classification_bce", ("logit",), ("label",)),
    "tend_margin": LossTerm(f"{_ANOMALY}:tend_margin", ("features", "centre"), ("label",)),
    "vae": LossTerm(f"{_ANOMALY}:vae_loss", ("reconstruction", "mu", "logvar"), ("image",)),
    "cvae": LossTerm(
      f"{_ANOMALY}:cvae_loss",
      ("reconstruction", "mu1", "logvar1", "mu2", "logvar2"),
      ("image",),
    ),
    "discriminator_bce": LossTerm(f"{_ANOMALY}:discriminator_bce", ("real_logit", "fake_logit")),
    # Partially labelled multi-organ data (batch["known"]: which organs a sample annotates).
    "partial_bce": LossTerm(f"{_PARTIAL}:partial_bce", ("logits",), ("label", "known")),
    "marginal_cross_entropy": LossTerm(
      f"{_PARTIAL}:marginal_cross_entropy", ("logits",), ("label", "known")
    ),
    "exclusion_dice": LossTerm(f"{_PARTIAL}:exclusion_dice", ("logits",), ("label",)),
    # LTUDA's prototype heads (ProtoSeg's pixel–prototype terms).
    "prototype_contrast": LossTerm(
      "mlsup_jax.losses.prototypes:prototype_contrast", ("pixel_logits", "pixel_target")
    ),
    "prototype_distance": LossTerm(
      "mlsup_jax.losses.prototypes:prototype_distance", ("pixel_logits", "pixel_target")
    ),
    # Retrieval on one image embedding: OSCARS and the metric-learning baselines.
    "oscars_quadruplet": LossTerm(
      f"{_METRIC}:oscars_quadruplet", ("image_embedding", "sample_key"), ("class_id", "bin")
    ),
    "triplet": LossTerm(f"{_METRIC}:triplet", ("image_embedding", "sample_key"), ("class_id",)),
    "supcon": LossTerm(f"{_METRIC}:supcon", ("image_embedding",), ("class_id",)),
    "multi_similarity": LossTerm(
      f"{_METRIC}:multi_similarity", ("image_embedding",), ("class_id",)
    ),
    "circle": LossTerm(f"{_METRIC}:circle", ("image_embedding",), ("class_id",)),
    "fastap": LossTerm(f"{_METRIC}:fastap", ("image_embedding",), ("class_id",)),
    # PMS retrieval (one embedding and one logit per finding; proxies voted from a memory bank).
    "multilabel_bce": LossTerm(f"{_RETRIEVAL}:multilabel_bce", ("finding_logits",), ("labels",)),
    "pms_proxy": LossTerm(
      f"{_RETRIEVAL}:pms_proxy",
      ("finding_embeddings", "proxies", "has_proxy", "prevalence"),
      ("labels",),
    ),
    # Mask R-CNN (the model returns its sampled targets next to its predictions).
    "rpn_objectness": LossTerm(
      f"{_DETECTION}:rpn_objectness", ("rpn_logits", "rpn_labels", "rpn_weights")
    ),
    "rpn_box": LossTerm(
      f"{_DETECTION}:rpn_box", ("rpn_deltas", "rpn_target_deltas", "rpn_positive")
    ),
    "roi_class": LossTerm(
      f"{_DETECTION}:roi_class", ("roi_class_logits", "roi_labels", "roi_valid")
    ),
    "roi_box": LossTerm(
      f"{_DETECTION}:roi_box", ("roi_deltas", "roi_target_deltas", "roi_positive")
    ),
    "roi_mask": LossTerm(
      f"{_DETECTION}:roi_mask", ("mask_logits", "mask_targets", "mask_positive")
    ),
  },
)

__all__ = [
  "LOSSES",
  "LossRole",
  "LossTerm",
  "active_terms",
  "applicable_terms",
  "batch_keys",
  "check_loss_config",
  "loss_section",
  "merge_metrics",
  "role_config",
  "roles_section",
  "term_hparams",
  "weighted_sum",
]
