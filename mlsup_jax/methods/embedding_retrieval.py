"""Single-label image retrieval with a learned embedding: OSCARS and its baselines (ch. 6 §3).

One network (`config.model`, a ResNet-18 by default: the pooled feature is the embedding, fc
removed, not normalised during training), one stage, and the loss terms of `config.loss` on the
global batch (`losses/metric_learning.py`): `oscars_quadruplet` (needs the batch's `bin`, the
pseudo intra-class label), `triplet`, `supcon`, `multi_similarity`, `circle` or `fastap`. The
terms that draw partners in-batch get `sample_key`, a fresh key per step, so the step stays one
jitted, sharded function with fixed shapes.

Evaluation (`config.data.eval_source` with a `query` flag per example, e.g. from the OSCARS
pipeline's annotations; without flags: leave-one-out), ranked by cosine similarity:

* `precision@K/single` (the thesis's OSCARS "R@K") and `hit_rate@K/single` (its "P@K"), mAP and
  recall at every K of `eval.ks`, relevance = the same class;
* `outlier_sensitivity@K` (S@K) when the examples carry `anomaly` (the squashed detector score):
  the mean |A_i − A_q| over the relevant retrieved items — lower retrieves same-class images of
  more similar anomaly levels; queries with no relevant item in the top K are left out; and
  `chance_outlier_sensitivity`, a random same-class ranking's (the anomaly-blind level).
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from mlsup_jax import losses
from mlsup_jax.core.method import MAIN_STREAM, BatchKeys, Stage
from mlsup_jax.core.networks import apply_network, init_network
from mlsup_jax.core.optimizers import build_optimizer
from mlsup_jax.core.state import TrainState
from mlsup_jax.metrics.retrieval import outlier_sensitivity_at_k, relevance
from mlsup_jax.nn import build_model
from mlsup_jax.retrieval.evaluation import ranked_report, split_queries
from mlsup_jax.retrieval.index import exact_top_k

LOSS_ROLES = {"": losses.LossRole(outputs=("image_embedding", "sample_key"))}

__all__ = ["LOSS_ROLES", "EmbeddingRetrievalMethod"]


class EmbeddingRetrievalMethod:
  """One embedding network trained with metric-learning terms (module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    losses.check_loss_config(config.loss, LOSS_ROLES)
    self.loss_roles = LOSS_ROLES
    self.model = build_model(config.model)
    self.optimizer = build_optimizer(config.optimizer, config.train.num_steps)
    self.stages = (Stage("train", config.train.num_steps, self.train_step, self.optimizer),)
    self.batch_keys = BatchKeys({MAIN_STREAM: ("image", "class_id")}, ("image", "class_id"))
    self.batch_keys = self.batch_keys.with_losses(config.loss, LOSS_ROLES)

  def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
    params, model_state = init_network(self.model, rng, example_batch["image"], ("params",))
    return TrainState.create(params=params, optimizer=self.optimizer, model_state=model_state)

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """`batch: image [B, H, W, C], class_id [B]` (+ `bin [B]` for OSCARS) → one update."""

    def loss_fn(params):
      outputs, model_state = apply_network(
        self.model, params, state.model_state, batch["image"], train=True
      )
      named = {"image_embedding": outputs["features"], "sample_key": rng}
      loss, metrics = losses.weighted_sum(self.config.loss, outputs=named, batch=batch)
      return loss, (model_state, metrics)

    (loss, (model_state, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, optimizer=self.optimizer, model_state=model_state)
    return state, {"loss": loss, **metrics}

  def eval_step(self, state: TrainState, batch: dict, rng: jax.Array) -> dict:
    """Per image: `embedding [B, D]`, `class_id`, and `anomaly` / `query` when present."""
    del rng
    outputs, _ = apply_network(
      self.model, state.params, state.model_state, batch["image"], train=False
    )
    result = {"embedding": outputs["features"], "class_id": batch["class_id"]}
    for key in ("anomaly", "query"):
      if key in batch:
        result[key] = batch[key]
    return result

  def evaluate(self, outputs: dict, workdir: str | None = None) -> dict[str, float]:
    ks = tuple(int(k) for k in self.config.eval.ks)
    vectors = np.asarray(outputs["embedding"], np.float32)
    labels = np.asarray(outputs["class_id"]).reshape(-1)
    queries, database = split_queries(outputs.get("query"))
    if queries is None:
      queries = np.arange(len(labels))
      db, exclude = queries, queries
    else:
      db, exclude = database, None
    report, index = ranked_report(
      vectors[queries], labels[queries],
      None if exclude is not None else vectors[db], None if exclude is not None else labels[db],
      ks=ks, modes=("single",), with_index=True,
    )  # fmt: skip
    if "anomaly" in outputs:
      top = index.shape[1]  # the largest K that fits the database
      retrieved = db[index]
      rel = relevance(labels[queries], labels[retrieved], "single")
      anomaly = np.asarray(outputs["anomaly"], np.float64).reshape(-1)
      # A random ranking's S@K (any K): the mean |A_i − A_q| over all relevant database items —
      # what an embedding blind to the anomaly level scores.
      same = labels[db][None, :] == labels[queries][:, None]
      if exclude is not None:
        same &= db[None, :] != queries[:, None]
      gaps = np.abs(anomaly[db][None, :] - anomaly[queries][:, None])
      has = same.any(1)
      report["chance_outlier_sensitivity"] = float(
        np.mean(np.sum(gaps * same, 1)[has] / same.sum(1)[has])
      )
      for k in ks:
        if k <= top:
          value, used = outlier_sensitivity_at_k(
            rel[:, :k], anomaly[queries], anomaly[retrieved[:, :k]]
          )
          report[f"outlier_sensitivity@{k}"] = value
          report[f"outlier_sensitivity@{k}/queries"] = float(used)
    if workdir and self.config.eval.get("save_figures", True) and exclude is None:
      self._figure(workdir, vectors, labels, outputs.get("anomaly"), queries, db)
    return report

  def _figure(self, workdir, vectors, labels, anomaly, queries, database) -> None:
    """`retrieval.png`: the first queries and their top 5, titled with class (and anomaly)."""
    import os

    from mlsup_jax.data.sources import build_source
    from mlsup_jax.viz.retrieval import save_retrieval_figure

    source = build_source(self.config.data.eval_source)
    if len(source) != len(labels):
      return  # Outputs not in source order: no figure rather than a wrong one.
    names = list(getattr(source, "class_names", None) or map(str, range(int(labels.max()) + 1)))
    shown = queries[: int(self.config.eval.get("figure_queries", 6))]
    scores, index = exact_top_k(vectors[shown], vectors[database], min(5, len(database)))
    retrieved = database[index]
    order = np.unique(retrieved)
    position = {int(i): j for j, i in enumerate(order)}

    def titles(items):  # the class, and the anomaly score A when known
      if anomaly is None:
        return labels[items]
      return np.asarray([f"{names[labels[i]]} A={anomaly[i]:.2f}" for i in items])

    image = lambda i: np.asarray(source[int(i)]["image"])  # noqa: E731
    save_retrieval_figure(
      os.path.join(workdir, "retrieval.png"),
      np.stack([image(i) for i in shown]),
      np.stack([image(i) for i in order]),
      np.vectorize(position.get)(retrieved),
      scores,
      titles(shown),
      titles(order),
      relevant=labels[retrieved] == labels[shown][:, None],
      label_names=None if anomaly is not None else names,
    )
