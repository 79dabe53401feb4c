r"""CVAD anomaly detection on the chest-radiograph phantom (one-vs-rest: ID = normal).

Train and evaluate:
  python -m launch.train --config=configs/cvad.py --workdir=runs/cvad
Smoke run (seconds on a CPU):
  python -m launch.train --config=configs/cvad.py:smoke --workdir=runs/cvad_smoke
The public code's branch (flatten → FC, ≈ 0.7 B parameters at 256²) / the thesis's protocol:
  ... --config.model.branch_encoder=fc
  ... --config.eval.protocol=transductive

Options after the colon: `smoke` (tiny, for tests), `full` (the thesis's 256² images;
accelerators), `rest_vs_one` (ID = every abnormal class, OOD = normal),
`dataset=radiograph|ivc_filter|pydicom` (ivc_filter: the IVC-filter phantom, ID = one filter
design, OOD = the seven others; pydicom: the real-DICOM check — ID = the ultrasound frames inside
the pydicom wheel, OOD = its MR and CT images; transductive protocol).
"""

import ml_collections

from configs.sections import common
from configs.sections.anomaly_data import anomaly_data
from mlsup_jax import losses
from mlsup_jax.methods.cvad import LOSS_ROLES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(
    arg, flags={"smoke", "full", "rest_vs_one"}, values={"dataset": "radiograph"}
  )
  smoke, full = "smoke" in flags, "full" in flags
  config = ml_collections.ConfigDict()
  config.method = "cvad"
  config.seed = 0

  config.model = ml_collections.ConfigDict(
    {
      # Five Conv(4, 2, 1) + BN + LeakyReLU(0.2), base width 16, split 3 (E11) + 2 (E12).
      "base_width": 4 if smoke else 16,
      "e11_depth": 2 if smoke else 3,
      "e12_depth": 1 if smoke else 2,
      "latent_dim": 16 if smoke else 512,  # K; the branch latent is 4K (thesis).
      "branch_encoder": "conv",  # Thesis E2 (a stride-2 conv); "fc" = the authors' code.
      # I″ = decode(μ + δ), δ ~ N(0, (s·std μ)²): the thesis's "minor disturbance" (assumed);
      # 0 disables it (the authors' code: reconstructions only).
      "perturb_scale": 0.1,
      "discriminator_hidden_dim": 16 if smoke else 512,
      "dtype": "float32",
    }
  )
  config.loss = losses.roles_section(
    LOSS_ROLES,
    {"cvae": {"cvae": 1.0}, "discriminator": {"discriminator_bce": 1.0}},
    {
      # α1 = α2 = 1 (thesis); KL / (B·H·W·C) and only I′ supervised (the authors' code).
      "cvae": {
        "cvae": {
          "alpha1": 1.0,
          "alpha2": 1.0,
          "beta": 1.0,
          "kl_normalisation": "pixels",
          "reconstruction_target": "combined",
        }
      }
    },
  )
  # Ch. 4: Adam, lr 1e-3 for both networks; the authors' code adds weight decay 1e-6.
  config.optimizer = ml_collections.ConfigDict(
    {
      "generator": common.optimizer("adam", learning_rate=1e-3, weight_decay=1e-6),
      "discriminator": common.optimizer("adam", learning_rate=1e-3, weight_decay=1e-6),
    }
  )
  config.data = anomaly_data(
    values["dataset"], smoke=smoke, full=full, rest_vs_one="rest_vs_one" in flags
  )
  config.train = common.train(num_steps=0, log_every=2 if smoke else 50, checkpoint_every=500)
  del config.train.num_steps  # Each stage has its own length:
  config.train.cvae_steps = 4 if smoke else (5000 if full else 800)
  config.train.discriminator_steps = 3 if smoke else (1000 if full else 300)

  config.eval = ml_collections.ConfigDict(
    {
      "batch_size": 8 if smoke else 64,
      # clean: threshold + normalisation fitted on the validation split; transductive: on test.
      # clean needs a validation split; the pydicom check has none.
      "protocol": "transductive" if values["dataset"] == "pydicom" else "clean",
      "score": "cvad",  # The reported score; every score is reported as `<score>/<metric>`.
      "save_figures": True,
    }
  )
  config.mesh = common.mesh()
  return common.finalize(config)
