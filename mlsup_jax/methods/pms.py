"""PMS: proxy-based multi-class similarity for multi-label retrieval (thesis ch. 6 §4).

Network (`nn/retrieval_heads.ClassWiseEmbedder`): a ResNet-18 feature split into one embedding
e_i(x) per finding (k = 14) with one classification head per finding. Two stages:

1. `warmup` — the findings' BCE (`config.loss.warmup`, `multilabel_bce`); after every step the
   batch's embeddings of positive findings are pushed into each finding's FIFO ring of M slots
   (`retrieval/memory_bank.py`, carried in `state.extra["memory"]`, updated inside the jitted,
   sharded step by masked scatters — global over devices and hosts, no host sync). The bank
   stores the training-mode forward pass's embeddings (the code's; the thesis is silent).
2. `pms` — `prepare` votes the proxies c_i (the mean of each ring's valid entries, normalised)
   and fixes them; the bank stops updating. Loss `config.loss.pms`: λ·BCE + (1 − λ)·`pms_proxy`
   with λ = 0.25 as term weights; τ = each finding's prevalence in the training source, computed
   once from its labels before training.

`train.pms_steps = 0` leaves out stage 2: the BCE-only baseline with the same network (its
embedding for retrieval is the backbone feature, cosine).

Evaluation (`config.data.eval_source`, usually `query_database`: queries flagged `query`; without
flags, leave-one-out): per image the class probabilities p, the similarity vector
s_i = cos(c_i, e_i(x)) and the backbone feature f(x). Reported (`retrieval/evaluation.py`):

* `pms_weighted/…` — rank by Σ_i p_i^q |s_i^q − s_i^t| ascending (eq. 6.5, the query's p only);
* `pms_unweighted/…` — Σ_i |s_i^q − s_i^t|;
* `feature/…` — cosine of the backbone features (the BCE-only baseline's retrieval);

each as precision / mAP / hit rate / recall @K under exact and partial relevance, NDCG / ACG
graded by shared findings; the run's own rule (`eval.retrieval`: PMS → `pms_weighted`, the BCE
baseline → `feature`) is repeated as `retrieval/…`; and classification AUC per finding with
micro / macro / weighted averages, from probabilities (`auc/…`) and from predictions
thresholded at 0.5 as the authors' code (`auc_thresholded/…`, the thesis's Table 6.3).

A finding no training image has: τ = 0 and its ring stays empty, so it has no proxy, its term of
the PMS loss is 0 and its similarity s_i is constant 0 — a warning names it (documented result).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from sklearn.metrics import roc_auc_score

from mlsup_jax import losses
from mlsup_jax.core.method import MAIN_STREAM, BatchKeys, Stage
from mlsup_jax.core.networks import apply_network, init_network
from mlsup_jax.core.optimizers import build_optimizer
from mlsup_jax.core.state import TrainState
from mlsup_jax.data.phantoms.finding_statistics import FINDING_CODES, FINDINGS
from mlsup_jax.data.sources import build_source
from mlsup_jax.losses.embeddings import l2_normalise
from mlsup_jax.losses.segmentation import example_weights
from mlsup_jax.nn import build_model
from mlsup_jax.retrieval import memory_bank
from mlsup_jax.retrieval.evaluation import ranked_report, split_queries

RETRIEVAL_RULES = ("pms_weighted", "pms_unweighted", "feature")
PMS_OUTPUTS = ("finding_logits", "finding_embeddings", "proxies", "has_proxy", "prevalence")
LOSS_ROLES = {
  "warmup": losses.LossRole(outputs=("finding_logits",)),
  "pms": losses.LossRole(outputs=PMS_OUTPUTS),
}

__all__ = ["LOSS_ROLES", "PmsMethod", "training_prevalence"]


def training_prevalence(source_config) -> np.ndarray:
  """`[k]` float32: the share of training images positive for each finding (τ).

  Reads a phantom's `label_sets` attribute when it has one, else every example's `labels`.
  """
  source = build_source(source_config)
  labels = getattr(source, "label_sets", None)
  if labels is None:
    labels = np.stack([np.asarray(source[i]["labels"]) for i in range(len(source))])
  labels = np.asarray(labels, np.float64)
  if labels.ndim != 2 or not len(labels):
    raise ValueError(f"the training source's labels must be [N, k] 0/1, got {labels.shape}.")
  if np.any((labels != 0) & (labels != 1)):
    raise ValueError("the training source's labels must be 0 / 1 (U-Zeros: uncertain → 0).")
  return labels.mean(axis=0).astype(np.float32)


class PmsMethod:
  """PMS's two stages, its carried memory bank and its retrieval evaluation (module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    t, m = config.train, config.model
    if t.warmup_steps < 1 or t.pms_steps < 0:
      raise ValueError(
        f"train.warmup_steps must be ≥ 1 (it fills the bank) and train.pms_steps ≥ 0; got "
        f"{t.warmup_steps}, {t.pms_steps}."
      )
    if config.memory.size < 1:
      raise ValueError(f"memory.size must be ≥ 1, got {config.memory.size}.")
    roles = LOSS_ROLES if t.pms_steps else {"warmup": LOSS_ROLES["warmup"]}
    losses.check_loss_config(config.loss, LOSS_ROLES)
    self.loss_roles = LOSS_ROLES
    self.model = build_model(m)
    self.num_classes = int(m.num_classes)
    self.prevalence = training_prevalence(config.data.train_source)
    if self.prevalence.shape != (self.num_classes,):
      raise ValueError(
        f"the training labels have {self.prevalence.shape[0]} findings but model.num_classes is "
        f"{self.num_classes}."
      )
    self.class_names = tuple(config.data.get("class_names") or map(str, range(self.num_classes)))
    codes = dict(zip(FINDINGS, FINDING_CODES, strict=True))
    self.short_names = tuple(codes.get(name, name) for name in self.class_names)
    absent = [self.class_names[i] for i in np.flatnonzero(self.prevalence == 0)]
    if absent:
      logging.warning(
        "PMS: no training image has %s: no proxy, a zero PMS term and a constant similarity for "
        "those findings.", absent,
      )  # fmt: skip
    warmup_opt = build_optimizer(config.optimizer, t.warmup_steps)
    self.stages = [Stage("warmup", t.warmup_steps, self.warmup_step, warmup_opt)]
    if t.pms_steps:
      pms_opt = build_optimizer(config.optimizer, t.pms_steps)
      self.stages.append(
        Stage("pms", t.pms_steps, self.pms_step, pms_opt, prepare=self.fix_proxies)
      )
    self.stages = tuple(self.stages)
    keys = ("image", "labels")
    self.batch_keys = BatchKeys({MAIN_STREAM: keys}, keys).with_losses(config.loss, roles)

  def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
    params, model_state = init_network(self.model, rng, example_batch["image"], ("params",))
    k, n = self.num_classes, int(self.config.model.embedding_dim)
    memory = memory_bank.init_memory(k, int(self.config.memory.size), n)
    return TrainState.create(
      params=params,
      optimizer=self.stages[0].optimizer,
      model_state=model_state,
      extra={
        "memory": memory._asdict(),
        "proxies": jnp.zeros((k, n), jnp.float32),
        "has_proxy": jnp.zeros((k,), bool),
      },
    )

  # ---------------------------------------------------------------- stages (pure)

  def fix_proxies(self, state: TrainState) -> TrainState:
    """Stage 2 begins: the proxies are voted from the bank and fixed."""
    proxies, has = memory_bank.proxies(memory_bank.ClassMemory(**state.extra["memory"]))
    return state.replace(extra={**state.extra, "proxies": proxies, "has_proxy": has})

  def _step(self, role: str, stage_index: int, update_bank: bool):
    def step(state: TrainState, batch: dict, rng: jax.Array):
      del rng

      def loss_fn(params):
        outputs, model_state = apply_network(
          self.model, params, state.model_state, batch["image"], train=True
        )
        named = {
          "finding_logits": outputs["logits"],
          "finding_embeddings": outputs["embeddings"],
          "proxies": state.extra["proxies"],
          "has_proxy": state.extra["has_proxy"],
          "prevalence": jnp.asarray(self.prevalence),
        }
        loss, metrics = losses.weighted_sum(
          self.config.loss[role], outputs=named, batch=batch, role=role
        )
        return loss, (model_state, metrics, outputs["embeddings"])

      (loss, (model_state, metrics, embeddings)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
      )
      extra = state.extra
      if update_bank:
        valid = example_weights(batch, embeddings.shape[0]) > 0
        positive = (batch["labels"] > 0.5) & valid[:, None]
        memory = memory_bank.update(
          memory_bank.ClassMemory(**extra["memory"]), embeddings, positive
        )
        extra = {**extra, "memory": memory._asdict()}
        metrics = {**metrics, "bank_filled": jnp.mean(memory.count / memory.bank.shape[1])}
      state = state.apply_gradients(
        grads=grads, optimizer=self.stages[stage_index].optimizer, model_state=model_state,
        extra=extra,
      )  # fmt: skip
      return state, {"loss": loss, **metrics}

    return step

  def warmup_step(self, state, batch, rng):
    """`batch: image [B, H, W, C], labels [B, k]` → BCE update + bank update."""
    return self._step("warmup", 0, update_bank=True)(state, batch, rng)

  def pms_step(self, state, batch, rng):
    """`batch: image [B, H, W, C], labels [B, k]` → λ·BCE + (1 − λ)·PMS update (bank frozen)."""
    return self._step("pms", 1, update_bank=False)(state, batch, rng)

  # ---------------------------------------------------------------- evaluation

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    """Per image: `probabilities [B, k]`, `similarities [B, k]`, `features [B, F]`, `labels`."""
    del rng
    outputs, _ = apply_network(
      self.model, state.params, state.model_state, batch["image"], train=False
    )
    # From the bank (frozen after warm-up), so the BCE-only run (no stage 2) has proxies too.
    proxies, _ = memory_bank.proxies(memory_bank.ClassMemory(**state.extra["memory"]))
    e = l2_normalise(outputs["embeddings"])
    result = {
      "probabilities": jax.nn.sigmoid(outputs["logits"]),
      "similarities": jnp.einsum("bkn,kn->bk", e, proxies),
      "features": outputs["features"],
      "labels": batch["labels"],
    }
    if "query" in batch:
      result["query"] = batch["query"]
    return result

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    e = self.config.eval
    labels = np.asarray(outputs["labels"]) > 0.5
    queries, database = split_queries(outputs.get("query"))
    q = slice(None) if queries is None else queries

    def rank(prefix, vectors, similarity, weights=None):
      db = None if database is None else vectors[database]
      db_labels = None if database is None else labels[database]
      return ranked_report(
        vectors[q], labels[q], db, db_labels, ks=tuple(e.ks), modes=("exact", "partial"),
        similarity=similarity, query_weights=weights, prefix=prefix,
      )  # fmt: skip

    probs = np.asarray(outputs["probabilities"], np.float32)
    sims = np.asarray(outputs["similarities"], np.float32)
    results = {}
    results.update(rank("pms_weighted", sims, "weighted_l1", probs[q]))
    results.update(rank("pms_unweighted", sims, "weighted_l1"))
    results.update(rank("feature", np.asarray(outputs["features"], np.float32), "cosine"))
    # The run's own retrieval rule under one name, so rows of a study compare like with like.
    rule = e.retrieval
    if rule not in RETRIEVAL_RULES:
      raise ValueError(f"eval.retrieval must be one of {RETRIEVAL_RULES}, got {rule!r}.")
    results.update(
      {"retrieval/" + k[len(rule) + 1 :]: v for k, v in results.items() if k.startswith(rule + "/")}
    )
    results.update(finding_auc(labels, probs, self.class_names))
    if workdir and e.get("save_figures", True):
      self._figure(workdir, sims, probs, labels, queries, database)
    return results

  def _figure(self, workdir, sims, probs, labels, queries, database) -> None:
    from mlsup_jax.retrieval.index import exact_top_k
    from mlsup_jax.viz.retrieval import save_retrieval_figure

    if queries is None:
      return
    source = build_source(self.config.data.eval_source)
    if len(source) != len(labels):
      return  # Outputs not in source order: no figure rather than a wrong one.
    shown = queries[: int(self.config.eval.figure_queries)]
    k = min(5, len(database))
    scores, index = exact_top_k(
      sims[shown], sims[database], k, similarity="weighted_l1", query_weights=probs[shown]
    )
    retrieved = database[index]
    image = lambda i: np.asarray(source[int(i)]["image"])  # noqa: E731
    db_order = np.unique(retrieved)
    position = {int(i): j for j, i in enumerate(db_order)}
    save_retrieval_figure(
      os.path.join(workdir, "retrieval.png"),
      np.stack([image(i) for i in shown]),
      np.stack([image(i) for i in db_order]),
      np.vectorize(position.get)(retrieved),
      -scores,
      labels[shown].astype(int),
      labels[db_order].astype(int),
      relevant=np.all(labels[retrieved] == labels[shown][:, None], -1),
      label_names=self.short_names,
    )


def finding_auc(labels, probabilities, names) -> dict[str, float]:
  """Per-finding ROC AUC and micro / macro / weighted averages, from probabilities (`auc/…`) and
  from predictions thresholded at 0.5 (`auc_thresholded/…`, the authors' code). Findings with one
  label value in the evaluation set are left out of the per-finding and macro values."""
  labels = np.asarray(labels).astype(int)
  results = {}
  for kind, scores in (("auc", probabilities), ("auc_thresholded", probabilities > 0.5)):
    scores = np.asarray(scores, np.float64)
    present = [i for i in range(labels.shape[1]) if 0 < labels[:, i].sum() < len(labels)]
    if not present:
      continue
    for i in present:
      results[f"{kind}/{names[i]}"] = float(roc_auc_score(labels[:, i], scores[:, i]))
    results[f"{kind}/macro"] = float(np.mean([results[f"{kind}/{names[i]}"] for i in present]))
    cols = np.asarray(present)
    results[f"{kind}/micro"] = float(
      roc_auc_score(labels[:, cols].ravel(), scores[:, cols].ravel())
    )
    results[f"{kind}/weighted"] = float(
      roc_auc_score(labels[:, cols], scores[:, cols], average="weighted")
    )
  return results
