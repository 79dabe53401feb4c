r"""TEND novelty detection on the chest-radiograph phantom (one-vs-rest: ID = normal).

Train and evaluate:
  python -m launch.train --config=configs/tend.py --workdir=runs/tend
Smoke run (seconds on a CPU):
  python -m launch.train --config=configs/tend.py:smoke --workdir=runs/tend_smoke
Other margins / the thesis's frozen encoder / the authors' score / the thesis's protocol:
  ... --config.model.margin=500 --config.model.freeze_encoder=True
  ... --config.eval.score=tend_code --config.eval.protocol=transductive

Options after the colon: `smoke` (tiny, for tests), `full` (the thesis's 256² images;
accelerators), `rest_vs_one` (ID = every abnormal class, OOD = normal),
`dataset=radiograph|ivc_filter|pydicom` (ivc_filter: the IVC-filter phantom, ID = one filter
design, OOD = the seven others; pydicom: the real-DICOM check — ID = the ultrasound frames inside
the pydicom wheel, OOD = its MR and CT images; transductive protocol), `margin=R`.
"""

import ml_collections

from configs.sections import common
from configs.sections.anomaly_data import anomaly_data
from mlsup_jax import losses
from mlsup_jax.methods.tend import LOSS_ROLES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(
    arg, flags={"smoke", "full", "rest_vs_one"}, values={"margin": "250", "dataset": "radiograph"}
  )
  smoke, full = "smoke" in flags, "full" in flags
  config = ml_collections.ConfigDict()
  config.method = "tend"
  config.seed = 0

  config.model = ml_collections.ConfigDict(
    {
      # Table 4.1: five Conv(4, 2, 1) + BN + ReLU, widths 16 … 256; the classifier conv is 512.
      "base_width": 4 if smoke else 16,
      "depth": 3 if smoke else 5,
      "use_norm": True,
      "head_norm": False,  # The authors' code: ReLU(Conv) without BN.
      "feature_dim": 16 if smoke else 512,  # K, the compressed feature c.
      "freeze_encoder": False,  # Thesis: frozen; the authors' code: fine-tuned.
      "margin": float(values["margin"]),  # R, on the squared distance: {150, 250, 500}.
      "centre_eps": 0.1,  # DeepSVDD: |O_k| < ε → ±ε.
      "dtype": "float32",
    }
  )
  # Warm-up: BCE only; then L_cls + L_mrg with unit weights (thesis L2926–2932). The margin
  # term's R is `model.margin` (also the score's). BCE label smoothing 0 (thesis and code).
  config.loss = losses.roles_section(
    LOSS_ROLES,
    {
      "autoencoder": {"reconstruction_mse": 1.0},
      "warmup": {"classification_bce": 1.0},
      "classifier": {"classification_bce": 1.0, "tend_margin": 1.0},
    },
    {
      "warmup": {"tend_margin": {"margin": config.model.get_ref("margin")}},
      "classifier": {"tend_margin": {"margin": config.model.get_ref("margin")}},
    },
  )
  # Thesis: Adam, lr 1e-3; the authors' code adds a coupled weight decay of 1e-6.
  config.optimizer = common.optimizer("adam", learning_rate=1e-3, weight_decay=1e-6)

  config.data = anomaly_data(
    values["dataset"], smoke=smoke, full=full, rest_vs_one="rest_vs_one" in flags
  )
  # Every batch: the (augmented) originals and one random distortion of each.
  config.data.train_transforms = (*config.data.train_transforms, "tend_distortion")
  # The authors' code has one distortion set per dataset: IVC (9 options) for the IVC filters,
  # RSNA (8 options) for the chest radiographs and the other data.
  config.data.distortion_preset = "ivc" if values["dataset"] == "ivc_filter" else "rsna"
  # Evaluation on unseen transformations (Tables 4.5–4.6): a name, or None to draw one per image.
  config.data.unseen_transform = None

  # One epoch of centre accumulation: ceil(#ID training images / batch).
  id_train = config.data.num_id_train
  config.train = common.train(num_steps=0, log_every=2 if smoke else 50, checkpoint_every=500)
  del config.train.num_steps  # Each stage has its own length:
  config.train.autoencoder_steps = 4 if smoke else (3000 if full else 600)
  config.train.warmup_steps = 3 if smoke else (1000 if full else 200)
  config.train.centre_steps = -(-id_train // config.data.batch_size)
  config.train.margin_steps = 4 if smoke else (3000 if full else 600)

  config.eval = ml_collections.ConfigDict(
    {
      "batch_size": 8 if smoke else 64,
      # clean: threshold + normalisation fitted on the validation split; transductive: on test.
      # clean needs a validation split; the pydicom check has none.
      "protocol": "transductive" if values["dataset"] == "pydicom" else "clean",
      "score": "tend",  # The reported score; every score is reported as `<score>/<metric>`.
      "score_lambda": 0.5,  # λ in λ·p + (1 − λ)·d/R.
      "save_figures": True,
    }
  )
  config.mesh = common.mesh()
  return common.finalize(config)
