r"""OSCARS: outlier-sensitive radiograph retrieval with pseudo intra-class labels (ch. 6 §3).

The whole pipeline and its study (`pipelines/oscars.py`):
  python -m launch.oscars --config=configs/oscars.py --workdir=runs/oscars --seeds=3
  python -m launch.oscars --config=configs/oscars.py:small,detector=autoencoder \
      --workdir=runs/oscars_small --rows=oscars,triplet

1. per-class anomaly detectors (MedShift's, `config.detector`) trained on the clean internal
   site; 2. every external image (the MURA-like phantom of `configs/embedding_retrieval.py`:
   five distinct classes, 30 % outliers) is scored by its class's detector; 3. per class, the
   training images' scores are split into B = 5 bins by 1-D k-means (the pseudo intra-class
   labels); 4. one retrieval model per row (`configs/embedding_retrieval.py`) on the external
   training split; evaluation on the external test split (the first 20 % are queries, the rest
   the database).

Options after the colon: sizes `smoke`, `tiny` (the learns test's), `small`, default, `full`;
`detector=cvad|autoencoder|vae` (default cvad: MedShift's and the thesis's); `bins=<int>` (B;
0 = the elbow rule).

Anomaly scores for S@K: each detector score is standardised over its class's external training
images and squashed by a sigmoid (the thesis squashes MURA's "due to the large variations";
the standardisation makes the classes comparable), so A ∈ (0, 1).
"""

import ml_collections

from configs import embedding_retrieval
from configs import medshift as medshift_config
from configs.sections import common

# Pipeline size → MedShift's size for the detectors and the internal site.
DETECTOR_SIZE = {"smoke": "smoke", "tiny": "smoke", "small": "small", "default": None,
                 "full": "full"}  # fmt: skip
ROWS = embedding_retrieval.LOSSES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  flags, values = common.parse_arg(
    arg,
    flags={"smoke", "tiny", "small", "full"},
    values={"detector": "cvad", "bins": "5"},
  )
  size = embedding_retrieval.size_of(flags)
  medshift_size = DETECTOR_SIZE[size]
  medshift = medshift_config.get_config(
    ",".join(filter(None, [medshift_size, f"detector={values['detector']}", "grouping=kmeans"]))
  )
  retrieval = embedding_retrieval.get_config(size if size != "default" else None)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.size = size
  # MedShift's sections (read by `pipelines/medshift.py`'s detector and grouping steps).
  config.detector = medshift.detector
  config.detector_score = medshift.detector_score
  config.detector_split = medshift.detector_split
  config.grouping = ml_collections.ConfigDict(
    {"method": "kmeans", "num_groups": int(values["bins"]), "k_max": 10}
  )
  if size == "tiny":  # the learns test: a short detector run
    with config.detector.unlocked():
      config.detector.train.num_steps = 100
  # The clean internal site: the same classes, another seed, no outliers.
  base = retrieval.data.train_source.base
  config.internal = embedding_retrieval.external_source(
    "train", medshift.internal.num_cases, base.image_size, seed=0, shifts=(0.0,) * 5
  )
  config.external = retrieval.data.train_source.base
  config.external_eval = retrieval.data.eval_source.base
  config.query_fraction = embedding_retrieval.NUM_QUERIES
  config.rows = ROWS
  config.retrieval_options = size if size != "default" else ""
  config.lock()
  return config
