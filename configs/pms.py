r"""PMS: multi-label chest-radiograph retrieval with proxy-based multi-class similarity (ch. 6 §4).

Train and evaluate (warm-up with BCE filling the memory bank, then BCE + PMS; the multi-finding
radiograph phantom, whose label sets follow CheXpert's):
  python -m launch.train --config=configs/pms.py --workdir=runs/pms
The BCE-only baseline (the same network and step budget, no PMS stage):
  python -m launch.train --config=configs/pms.py:method=bce --workdir=runs/pms_bce
The study (both rows × seeds, table in docs/results/pms.md):
  python -m launch.retrieval_study --config=configs/pms.py --rows=pms,bce --seeds=3 \
    --workdir=runs/pms_study
Smoke run:  ... --config=configs/pms.py:smoke

Options after the colon (comma-separated): `method=pms|bce`; `norelu` (no ReLU on the
class-wise embeddings, so negatives can reach cos −1); `bce_sum` (the thesis's BCE summed over
findings instead of the code's mean); sizes `smoke`, `tiny` (the learns
test's), `small`, default (64², phantom), `full` (the thesis: 224², ResNet-18 at full width,
N = 512, M = 1000, batch 64, 5 + 10 epochs of a CheXpert-sized set — accelerators).

Splits: `train` trains; the retrieval evaluation (`eval_source`, a `query_database` source) uses
the phantom's `test` split as queries and its `val` split as the database — disjoint images, so
no query finds itself. Exact label-set matches are rare (as in CheXpert), which is what PMS is for.

Spec choices (thesis_ch5_6 §4): the code's ReLU on the class-wise embeddings and its mean BCE
over findings (`class_reduction`); Adam with weight decay 1e-5 and batch 64 (the code); λ = 0.25
as the term weights (0.25 BCE + 0.75 PMS); the proxies are the mean of each ring's filled slots
(not of all M slots, which would bias rare findings to zero); U-Zeros labels.
"""

import ml_collections

from configs.sections import common
from mlsup_jax import losses
from mlsup_jax.data.phantoms.finding_statistics import FINDINGS
from mlsup_jax.methods.pms import LOSS_ROLES

METHODS = ("pms", "bce")


def phantom(split: str, num_cases: int, image_size: int) -> dict:
  return {
    "name": "phantom_multi_finding_radiograph",
    "split": split,
    "num_cases": num_cases,
    "seed": 0,
    "image_size": image_size,
  }


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(
    arg, flags={"smoke", "tiny", "small", "full", "norelu", "bce_sum"}, values={"method": "pms"}
  )
  method = values["method"]
  if method not in METHODS:
    raise ValueError(f"Unknown method {method!r}; expected one of {METHODS}.")
  size_name = next((f for f in ("smoke", "tiny", "small", "full") if f in flags), "default")
  # image size, width multiplier, N, M, train / query / database cases, warm-up / PMS steps, batch
  size, width, dim, bank, n_train, n_query, n_db, warmup, pms, batch = {
    "smoke": (32, 0.125, 8, 16, 32, 8, 16, 3, 2, 8),
    "tiny": (32, 0.125, 32, 128, 800, 100, 400, 150, 100, 32),
    "small": (48, 0.25, 64, 256, 3000, 300, 1500, 600, 400, 32),
    "default": (64, 0.5, 128, 1000, 8000, 500, 4000, 1500, 1500, 64),
    # 114,526 CheXpert frontal images / 64 ≈ 1,790 steps an epoch: 5 + 10 epochs.
    "full": (224, 1.0, 512, 1000, 114526, 1000, 20000, 8950, 17900, 64),
  }[size_name]
  config = ml_collections.ConfigDict()
  config.method = "pms"
  config.seed = 0
  config.model = ml_collections.ConfigDict(
    {
      "name": "class_wise_embedder",
      "num_classes": len(FINDINGS),
      "embedding_dim": dim,
      "stage_sizes": (2, 2, 2, 2),  # ResNet-18
      "width_multiplier": width,
      "small_input": size <= 64,
      "relu": "norelu" not in flags,
      "dtype": "float32",
    }
  )
  config.loss = losses.roles_section(
    LOSS_ROLES,
    {"warmup": {"multilabel_bce": 1.0}, "pms": {"multilabel_bce": 0.25, "pms_proxy": 0.75}},
  )
  if "bce_sum" in flags:  # the thesis's Σ over findings instead of the code's mean
    for role in ("warmup", "pms"):
      config.loss[role].multilabel_bce.class_reduction = "sum"
  config.memory = ml_collections.ConfigDict({"size": bank})
  config.optimizer = common.optimizer("adamw", learning_rate=1e-3, weight_decay=1e-5)
  config.data = ml_collections.ConfigDict(
    {
      "train_source": phantom("train", n_train, size),
      "eval_source": {
        "name": "query_database",
        "queries": phantom("test", n_query, size),
        "database": phantom("val", n_db, size),
      },
      "batch_size": batch,
      "seed": 0,
      "spatial_dims": 2,
      "num_classes": None,  # no pixel labels
      "class_names": FINDINGS,
      "require_label": False,
      "train_transforms": (),
      "eval_transforms": (),
      "worker_count": 0,
      "read_threads": 2,
    }
  )
  config.train = common.train(num_steps=0, log_every=1 if size_name == "smoke" else 50,
                              checkpoint_every=500)  # fmt: skip
  del config.train.num_steps  # each stage has its own length
  # The BCE-only baseline trains as many steps, all of them BCE.
  config.train.warmup_steps = warmup + pms if method == "bce" else warmup
  config.train.pms_steps = 0 if method == "bce" else pms
  config.eval = ml_collections.ConfigDict(
    {
      "batch_size": 64,
      "ks": (1, 5, 10, 50),
      # The rule reported again as `retrieval/…`: PMS's weighted similarity, or the BCE
      # baseline's feature cosine.
      "retrieval": "feature" if method == "bce" else "pms_weighted",
      "figure_queries": 6,
      "save_figures": True,
    }
  )
  config.mesh = common.mesh()
  return common.finalize(config)
