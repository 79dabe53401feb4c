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
