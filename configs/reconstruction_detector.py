r"""Reconstruction baselines (AE, plain VAE) on the chest-radiograph phantom (one-vs-rest).

Train and evaluate:
  python -m launch.train --config=configs/reconstruction_detector.py:network=vae --workdir=runs/vae
  python -m launch.train --config=configs/reconstruction_detector.py --workdir=runs/ae

Options after the colon: `network=autoencoder|vae` (default autoencoder), `smoke`, `full`,
`rest_vs_one`, `dataset=radiograph|ivc_filter|pydicom` (ivc_filter: the IVC-filter phantom,
ID = one filter design, OOD = the seven others; pydicom: the real-DICOM check, ID = the
ultrasound frames inside the pydicom wheel, OOD = its MR and CT images; transductive protocol).
"""

import ml_collections

from configs.sections import common
from configs.sections.anomaly_data import anomaly_data
from mlsup_jax import losses
from mlsup_jax.methods.reconstruction_detector import LOSS_ROLES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(
    arg,
    flags={"smoke", "full", "rest_vs_one"},
    values={"network": "autoencoder", "dataset": "radiograph"},
  )
  smoke, full, network = "smoke" in flags, "full" in flags, values["network"]
  if network not in ("autoencoder", "vae"):
    raise ValueError(f"network must be 'autoencoder' or 'vae', got {network!r}.")
  config = ml_collections.ConfigDict()
  config.method = "reconstruction_detector"
  config.seed = 0
  config.model = ml_collections.ConfigDict(
    {
      "name": network,
      # The AE is TEND's stage-1 network (ReLU); the VAE uses CVAD's blocks (LeakyReLU 0.2).
      "base_width": 4 if smoke else 16,
      "depth": 3 if smoke else 5,
      "activation": "relu" if network == "autoencoder" else "leaky_relu",
      "dtype": "float32",
    }
  )
  if network == "vae":
    config.model.latent_dim = 16 if smoke else 512
  term = "reconstruction_mse" if network == "autoencoder" else "vae"
  # The VAE's KL / (B·H·W·C), as CVAD's code: the VAE trained like CVAD's generator.
  config.loss = losses.roles_section(
    LOSS_ROLES[network],
    {"": {term: 1.0}},
    {"": {"vae": {"beta": 1.0, "kl_normalisation": "pixels"}} if network == "vae" else {}},
  )
  config.optimizer = common.optimizer("adam", learning_rate=1e-3, weight_decay=1e-6)
  config.data = anomaly_data(
    values["dataset"], smoke=smoke, full=full, rest_vs_one="rest_vs_one" in flags
  )
  steps = 4 if smoke else (5000 if full else 800)
  config.train = common.train(num_steps=steps, log_every=2 if smoke else 50, checkpoint_every=500)
  config.eval = ml_collections.ConfigDict(
    {
      "batch_size": 8 if smoke else 64,
      # Thresholds and normalisation from the validation split; the pydicom check has none.
      "protocol": "transductive" if values["dataset"] == "pydicom" else "clean",
      "score": "reconstruction",
      "save_figures": True,
    }
  )
  config.mesh = common.mesh()
  return common.finalize(config)
