"""`anomaly_study.with_seed`: one study repeated on fresh data and a fresh initialisation."""

import pytest

from configs import cvad, reconstruction_detector, tend
from mlsup_jax.pipelines import anomaly_study


@pytest.mark.parametrize(
  "config",
  [
    tend.get_config("smoke,dataset=ivc_filter"),
    cvad.get_config("smoke"),
    reconstruction_detector.get_config("network=vae,smoke"),
    tend.get_config("dataset=pydicom"),
  ],
  ids=["tend_ivc", "cvad", "vae", "tend_pydicom"],
)
def test_with_seed_sets_every_seed_and_leaves_the_input_alone(config):
  seeded = anomaly_study.with_seed(config, 3)
  assert seeded.seed == 3 and seeded.data.seed == 3
  for key in anomaly_study.SOURCE_KEYS:
    if key in seeded.data:
      assert seeded.data[key].seed == 3
      if "seed" in seeded.data[key].base:
        assert seeded.data[key].base.seed == 3
  # The three roles still partition one split of one phantom.
  roles = {seeded.data[k].role for k in anomaly_study.SOURCE_KEYS if k in seeded.data}
  assert roles <= {"train", "val", "test"} and "train" in roles
  assert config.seed == 0 and config.data.train_source.seed == 0  # a copy
  # Seed 0 is the default configuration.
  assert anomaly_study.with_seed(config, 0).to_dict() == config.to_dict()


def _study(ae: float, tend: float, opacity: float) -> dict:
  intra = {
    "AutoEncoder": {"auroc": ae, "diff": 0.1},
    "TEND (thesis score)": {"auroc": tend, "diff": 0.2},
  }
  tables = {
    "intra_class": intra,
    "inter_class_auroc": {"AutoEncoder": {"ct": 0.9}, "TEND (thesis score)": {"ct": 1.0}},
    "per_class_auroc": {"AutoEncoder": {"opacity": opacity}},
  }
  claims = {"TEND (thesis score) > AutoEncoder": tend > ae, "CVAD > VAE": None}
  return {"tables": tables, "claims": claims}


def test_seed_aggregate_gives_mean_std_with_each_seed_and_claim_counts():
  per_seed = [_study(0.62, 0.53, 0.67), _study(0.60, 0.64, 0.69), _study(0.58, 0.61, 0.65)]
  summary = anomaly_study.aggregate_seeds(per_seed)
  assert summary["holds"] == {"TEND (thesis score) > AutoEncoder": 2, "CVAD > VAE": 0}
  assert summary["tables"]["intra_class"]["AutoEncoder"]["auroc"] == [0.62, 0.60, 0.58]
  markdown = anomaly_study.render_seeds_markdown(summary)
  assert "| AutoEncoder | 0.600 ± 0.016 (0.620 / 0.600 / 0.580) |" in markdown
  assert "| AutoEncoder | 0.67 ± 0.02 (0.67 / 0.69 / 0.65) |" in markdown  # per class
  assert "- TEND (thesis score) > AutoEncoder: holds on 2 / 3 seeds" in markdown
