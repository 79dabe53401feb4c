"""MaxQuery (Yuan et al., CVPR 2023): a mask transformer for inlier segmentation + OOD localization.

Network: U-Net pixel backbone + kMaX clustering decoder (`nn/kmax.py`). Training: CE + Dice on
the MaskFormer semantic output, plus the query-distribution (QD) loss
(`losses/mask_transformer.py`), on the final layer and on every decoder layer (deep
supervision, `loss.aux_weight`); `loss.terms` without `query_distribution` is the paper's
"Ours w/o L_qd". Evaluation: per-pixel OOD scores from the final layer —

* `maxquery` = −max_n A (query level, pre-softmax: the paper's MaxQuery),
* `maxquery_post` = −max_n softmax_n(A) (query level, post-softmax),
* `category_post` = −max_k seg_k (category level, post-softmax: MSP on the semantic output),
* `category_pre` = −max_k logsumexp_n(A_n + log p(k|n)) (category level, pre-softmax) —

the paper's score-level ablation, plus the predicted classes and query assignments, scored by
`ood/segmentation_report.py`.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mlsup_jax.core.optimizers import build_optimizer
from mlsup_jax.core.registry import MODELS
from mlsup_jax.core.state import TrainState
from mlsup_jax.core.supervised import SupervisedStage
from mlsup_jax.losses import mask_transformer
from mlsup_jax.nn.kmax import semantic_log_probs
from mlsup_jax.ood import scores, segmentation_report

# Output key → (level, softmax) of `ood.scores.maxquery`.
MAXQUERY_VARIANTS = {
  "maxquery": ("query", "pre"),
  "maxquery_post": ("query", "post"),
  "category_post": ("category", "post"),
  "category_pre": ("category", "pre"),
}


def case_outputs(batch: dict) -> dict:
  """The ground-truth arrays every OOD-segmentation eval step passes through."""
  return {
    "image": batch["image"][..., 0],
    "label": batch["label"],
    "ood": batch["ood"],
    "lesion": batch["lesion"],
    "case_ood": batch["case_ood"],
  }


def build_model(config: ml_collections.ConfigDict):
  """The kMaX mask transformer of `config.model` (also used by the benchmarks and their tests)."""
  m = config.model
  return MODELS.get(m.name)(
    num_classes=m.num_classes,
    num_queries=m.num_queries,
    backbone_features=tuple(m.backbone_features),
    hidden_dim=m.hidden_dim,
    mask_dim=m.mask_dim,
    num_heads=m.num_heads,
    ffn_dim=m.ffn_dim,
    blocks_per_scale=tuple(m.blocks_per_scale),
    pixel_head_kernel=m.pixel_head_kernel,
    spatial_dims=config.data.spatial_dims,
    dropout_rate=m.dropout_rate,
    dtype=jnp.dtype(m.dtype),
  )


class MaxQueryMethod(SupervisedStage):
  """One supervised stage; evaluation = inlier Dice + OOD localization (module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.model = build_model(config)
    self.optimizer = build_optimizer(config.optimizer, config.train.num_steps)
    self.stages = self.single_stage(config.train.num_steps)

  def objective(self, outputs: dict, batch: dict):
    """Deep-supervised mask-transformer loss; `batch: image [B, *S, C], label [B, *S]`."""
    return mask_transformer.deep_supervision(
      self.config.loss, outputs=outputs, batch=batch, aux_weight=self.config.loss.aux_weight
    )

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    del rng  # Inference is deterministic.
    outputs = self.model.apply(
      {"params": state.params, **state.model_state}, batch["image"], train=False
    )
    mask_logits, class_logits = outputs["mask_logits"], outputs["class_logits"]
    result = case_outputs(batch)
    result["pred"] = jnp.argmax(semantic_log_probs(mask_logits, class_logits), axis=-1)
    result["assignment"] = jnp.argmax(mask_logits, axis=-1)
    for name, (level, softmax) in MAXQUERY_VARIANTS.items():
      result[f"score/{name}"] = scores.maxquery(
        mask_logits, class_logits, level=level, softmax=softmax
      )
    return result

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    cfg = self.config.eval
    class_names = tuple(self.config.data.class_names)
    results = segmentation_report.report(outputs, cfg, class_names, workdir)
    if workdir is not None and cfg.save_figures and jax.process_index() == 0:
      groups = mask_transformer.query_groups(self.config.loss.query_distribution.query_split)
      segmentation_report.save_case_figure(
        os.path.join(workdir, "maxquery_cases.png"),
        outputs,
        cfg,
        class_names,
        "score/maxquery",
        group_of_query=np.asarray(groups),
      )
    return results
