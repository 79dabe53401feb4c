"""MaxQuery (Yuan et al., CVPR 2023): a mask transformer for inlier segmentation + OOD localization.

Network: U-Net pixel backbone + kMaX clustering decoder (`nn/kmax.py`). Training: CE + Dice on
the MaskFormer semantic output, plus the query-distribution (QD) loss
(`losses/mask_transformer.py`), on the final layer and on every decoder layer (deep
supervision, weight `train.deep_supervision_weight`); `query_distribution.weight=0` is the
paper's "Ours w/o L_qd". Evaluation: per-pixel OOD scores from the final layer —

* `maxquery` = −max_n A (query level, pre-softmax: the paper's MaxQuery),
* `maxquery_post` = −max_n softmax_n(A) (query level, post-softmax),
* `category_post` = −max_k seg_k (category level, post-softmax: MSP on the semantic output),
* `category_pre` = −max_k logsumexp_n(A_n + log p(k|n)) (category level, pre-softmax) —

the paper's score-level ablation, plus the predicted classes and query assignments, scored by
`ood/segmentation_report.py`. Batches need only `image` and `label`: on data without the
phantom's OOD annotations (`ood`, `lesion`, `case_ood`) the report is the plain segmentation
report (Dice, IoU, HD95, HD, ASD) with a figure of the OOD score maps, and no OOD AUROC.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mlsup_jax import losses
from mlsup_jax.core.networks import apply_network
from mlsup_jax.core.state import TrainState
from mlsup_jax.core.supervised import SupervisedMethod
from mlsup_jax.losses import mask_transformer
from mlsup_jax.methods.segmentation import evaluation_class_names, passthrough
from mlsup_jax.nn import build_model
from mlsup_jax.nn.kmax import semantic_log_probs
from mlsup_jax.ood import scores, segmentation_report

# Output key → (level, softmax) of `ood.scores.maxquery`.
MAXQUERY_VARIANTS = {
  "maxquery": ("query", "pre"),
  "maxquery_post": ("query", "post"),
  "category_post": ("category", "post"),
  "category_pre": ("category", "pre"),
}


LOSS_ROLES = {"": losses.LossRole(outputs=("logits", "mask_logits", "class_logits"))}


def build_kmax(config: ml_collections.ConfigDict):
  """The kMaX mask transformer of `config.model` (also used by the benchmarks and their tests)."""
  return build_model(config.model, spatial_dims=config.data.spatial_dims)


class MaxQueryMethod(SupervisedMethod):
  """One supervised stage; evaluation = inlier Dice + OOD localization (module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.configure(config, LOSS_ROLES, build_kmax(config))

  def objective(self, outputs: dict, batch: dict):
    """Deep-supervised mask-transformer loss; `batch: image [B, *S, C], label [B, *S]`."""
    return mask_transformer.deep_supervision(
      self.config.loss,
      outputs=outputs,
      batch=batch,
      aux_weight=self.config.train.deep_supervision_weight,
    )

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    del rng  # Inference is deterministic.
    outputs, _ = apply_network(
      self.model, state.params, state.model_state, batch["image"], train=False
    )
    mask_logits, class_logits = outputs["mask_logits"], outputs["class_logits"]
    result = passthrough(batch)
    result["pred"] = jnp.argmax(semantic_log_probs(mask_logits, class_logits), axis=-1)
    result["assignment"] = jnp.argmax(mask_logits, axis=-1)
    for name, (level, softmax) in MAXQUERY_VARIANTS.items():
      result[f"score/{name}"] = scores.maxquery(
        mask_logits, class_logits, level=level, softmax=softmax
      )
    return result

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    cfg = self.config.eval
    class_names = evaluation_class_names(self.config)
    if not segmentation_report.has_ood_annotations(outputs):
      return segmentation_report.plain_report(
        outputs,
        class_names,
        workdir if cfg.save_figures else None,
        "maxquery",
        "score/maxquery",
        missed_distance=cfg.missed_distance,
      )
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
