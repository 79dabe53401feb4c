r"""MedShift on the shifted chest-radiograph phantoms (thesis Ch. 5; `pipelines/medshift.py`).

  python -m launch.medshift --config=configs/medshift.py --workdir=runs/medshift
  python -m launch.medshift --config=configs/medshift.py:detector=autoencoder,grouping=kmeans \
      --workdir=runs/medshift_ae_kmeans

Options after the colon: `smoke` (tiny, for tests), `small` (32², CPU-sized), `full` (256²,
the thesis's size; accelerators), `detector=cvad|autoencoder|vae` (default cvad),
`grouping=quantile|kmeans` (default quantile: the thesis's CVAD groups are quintiles),
`k=<int>` (groups per class; 0 = elbow rule; default 5).

Internal site: a clean radiograph phantom (seed 0). External site: another seed of the same
phantom with 30% injected shifts — 6% each of intensity, noise, artefact, foreign images and
label noise (`data/phantoms/shifted_external.py`).
"""

import ml_collections

from configs import cvad as cvad_config
from configs import image_classifier as classifier_config
from configs import reconstruction_detector as recon_config
from configs.sections import common

DETECTORS = ("cvad", "autoencoder", "vae")
# (intensity, noise, artefact, foreign, label_noise) shares of the external set.
EXTERNAL_SHIFTS = (0.06, 0.06, 0.06, 0.06, 0.06)


def _detector(name: str, size: str) -> ml_collections.ConfigDict:
  """The detector config, trained at MedShift's sizes (steps per class)."""
  smoke, full = size == "smoke", size == "full"
  size_arg = ",".join(filter(None, ["smoke" if smoke else "", "full" if full else ""]))
  if name == "cvad":
    config = cvad_config.get_config(size_arg or None)
    with config.unlocked():
      config.train.cvae_steps = {"smoke": 120, "small": 600, "default": 800}.get(size, 5000)
      config.train.discriminator_steps = {"smoke": 60, "small": 200, "default": 300}.get(size, 1000)
  else:
    config = recon_config.get_config(",".join(filter(None, [size_arg, f"network={name}"])))
    with config.unlocked():
      config.train.num_steps = {"smoke": 150, "small": 600, "default": 800}.get(size, 5000)
  with config.unlocked():
    config.train.tensorboard = False
    config.train.log_every = 50
  return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(
    arg,
    flags={"smoke", "small", "full"},
    values={"detector": "cvad", "grouping": "quantile", "k": "5"},
  )
  size = next((s for s in ("smoke", "small", "full") if s in flags), "default")
  if values["detector"] not in DETECTORS:
    raise ValueError(f"detector must be one of {DETECTORS}, got {values['detector']!r}.")
  image_size = {"smoke": 32, "small": 32, "default": 64, "full": 256}[size]
  num_cases = {"smoke": 240, "small": 1000, "default": 2000, "full": 20000}[size]

  config = ml_collections.ConfigDict()
  config.seed = 0

  def source(split, cases, seed, shifts=(0.0,) * 5):
    return classifier_config.phantom_source(
      split=split, num_cases=cases, seed=seed, image_size=image_size, shift_fractions=shifts
    )

  config.internal = source("train", num_cases, 0)
  config.internal_test = source("test", num_cases // 4, 0)
  config.external = source("train", num_cases, 1, EXTERNAL_SHIFTS)

  config.detector = _detector(values["detector"], size)
  # MedShift's score: CVAD s1 + p (thesis Ch. 5); the reconstruction error for AE / VAE.
  config.detector_score = "cvad_sum" if values["detector"] == "cvad" else "reconstruction"
  # Internal images of class c: 80% train the detector, 10% / 10% are its val / test ID images.
  config.detector_split = ml_collections.ConfigDict(
    {"fractions": (0.8, 0.1, 0.1), "ood_fractions": (0.0, 0.5, 0.5)}
  )
  config.grouping = ml_collections.ConfigDict(
    {"method": values["grouping"], "num_groups": int(values["k"]), "k_max": 10}
  )

  classifier = classifier_config.get_config("smoke" if size == "smoke" else None)
  with classifier.unlocked():
    classifier.train.num_steps = {"smoke": 100, "small": 400, "default": 1500}.get(size, 5000)
    classifier.train.tensorboard = False
    classifier.train.log_every = 50
    if size == "full":
      classifier.model.depth = 6
  config.classifier = classifier

  config.otdd = ml_collections.ConfigDict(
    {
      # Pixels pooled to 16² (256 features): Gaussian label costs need a [D, D] covariance.
      "pixel_pool": image_size // 16,
      "rounds": 2 if size == "smoke" else 10,
      "max_samples": 2000,
      "epsilon": 0.1,
      "min_class_count": 2,
      "inner_ot": "gaussian",
    }
  )
  config.lock()
  return config
