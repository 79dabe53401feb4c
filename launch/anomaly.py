r"""The anomaly-detection study: TEND, CVAD and the AE / VAE baselines on the radiograph phantom.

  python -m launch.anomaly --workdir=runs/anomaly                  # reduced (CPU)
  python -m launch.anomaly --workdir=runs/anomaly_smoke --options=smoke --inter_class=ct
  python -m launch.anomaly --workdir=runs/anomaly_rvo --options=rest_vs_one
  python -m launch.anomaly --workdir=runs/anomaly_ivc --options=dataset=ivc_filter   # IVC filters
  python -m launch.anomaly --workdir=runs/anomaly_ivc_s1 --options=dataset=ivc_filter --seed=1
  python -m launch.anomaly --workdir=runs/anomaly_seeds --seeds=3    # seeds 0-2, mean ± std

Trains `configs/tend.py`, `configs/cvad.py` and `configs/reconstruction_detector.py:network=vae`
in `<workdir>/<run>`, evaluates each on the intra-class test split, on every inter-class
modality and on the ID test images under each unseen transformation (Tables 4.5–4.6), prints
the thesis-shaped tables and writes `<workdir>/results.md`, `results.json` and `roc.png`.
Re-running resumes (finished runs are only re-evaluated). With `--seeds=N` the study runs for
seeds 0 … N−1 in `<workdir>/seed_<s>` and `<workdir>/results.md` gives every table as mean ± std
with each seed's value, and on how many seeds each claim holds.
"""

from absl import app, flags

from configs import cvad, reconstruction_detector, tend
from launch import common
from mlsup_jax.data.augmentation.distortions import UNSEEN_TRANSFORMS
from mlsup_jax.data.phantoms.modalities import MODALITY_NAMES
from mlsup_jax.pipelines import anomaly_study

_OPTIONS = flags.DEFINE_string(
  "options", "", "Options shared by the three configs (e.g. 'smoke', 'full', 'rest_vs_one')."
)
_SEED = flags.DEFINE_integer(
  "seed", 0, "Seed of the model, the data order, the ID/OOD split and the phantom's cases."
)
_SEEDS = flags.DEFINE_integer(
  "seeds", None, "Run seeds 0 … N−1 and aggregate them (overrides --seed)."
)
_RUNS = flags.DEFINE_list("runs", list(anomaly_study.RUNS), "Runs to train and evaluate.")
_INTER = flags.DEFINE_list(
  "inter_class", list(MODALITY_NAMES), "Modalities evaluated as inter-class OOD (empty: none)."
)
_UNSEEN = flags.DEFINE_list(
  "unseen",
  list(UNSEEN_TRANSFORMS),
  "Validation-only transforms for the ACC table (Tables 4.5–4.6; empty: none).",
)


def _config(run: str):
  options = _OPTIONS.value
  if run == "tend":
    return tend.get_config(options)
  if run == "cvad":
    return cvad.get_config(options)
  return reconstruction_detector.get_config(",".join(filter(None, ["network=vae", options])))


def main(argv):
  del argv
  common.start()

  def configs(seed):
    return {run: anomaly_study.with_seed(_config(run), seed) for run in _RUNS.value}

  options = {"inter_class": _INTER.value, "unseen": _UNSEEN.value}
  if _SEEDS.value:
    study = anomaly_study.run_seeds(configs, common.WORKDIR.value, range(_SEEDS.value), **options)
  else:
    study = anomaly_study.run_study(configs(_SEED.value), common.WORKDIR.value, **options)
  print(study["markdown"])
  print(f"\nWritten to {common.WORKDIR.value}/results.md and results.json.")


if __name__ == "__main__":
  app.run(main)
