"""The options shared by the noisy-label configs (configs/mcpm.py, configs/pint.py)."""

import pytest

from configs import mcpm as mcpm_config
from configs import pint as pint_config

CONFIGS = pytest.mark.parametrize("module", [mcpm_config, pint_config], ids=["mcpm", "pint"])


@CONFIGS
def test_config_rejects_unknown_options(module):
  with pytest.raises(ValueError, match="variant"):
    module.get_config("variant=l2rw")
  with pytest.raises(ValueError, match="noise"):
    module.get_config("noise=blur")
  with pytest.raises(ValueError, match="smoke, small and full"):
    module.get_config("smoke,small")


def _phantom(source):
  """The phantom section under an optional `relabel` wrapper (binary targets)."""
  return source.base if source.name == "relabel" else source


@CONFIGS
@pytest.mark.parametrize("target", ["liver", "all"])
def test_eval_option_picks_disjoint_validation_slices(module, target):
  test = module.get_config(f"small,target={target}").data
  val = module.get_config(f"small,eval=val,target={target}").data
  assert (_phantom(test.eval_source).split, _phantom(val.eval_source).split) == ("test", "val")
  assert _phantom(val.eval_source).num_cases == _phantom(test.eval_source).num_cases
  assert val.train_source == test.train_source
  with pytest.raises(ValueError, match="eval_split"):
    module.get_config("eval=train")


@CONFIGS
def test_both_methods_train_on_the_same_noisy_images(module):
  """MCPM's clean meta role is held out of PINT's training set too (a fair comparison)."""
  data = module.get_config("small,ratio=0.4").data
  reference = mcpm_config.get_config("small,ratio=0.4").data
  assert data.train_source == reference.train_source
  assert data.eval_source == reference.eval_source


@CONFIGS
def test_steps_option_sets_the_run_length(module):
  default = module.get_config("small")
  longer = module.get_config("small,steps=2400")
  assert (default.train.num_steps, longer.train.num_steps) == (600, 2400)
  with pytest.raises(ValueError, match="positive integer"):
    module.get_config("steps=0")
  with pytest.raises(ValueError, match="positive integer"):
    module.get_config("steps=many")


def test_steps_option_stretches_the_pint_ramps():
  """τ and the pseudo-label ramps follow the run length, not the size's default."""
  default = pint_config.get_config("small").pint
  longer = pint_config.get_config("small,steps=2400").pint
  assert longer.threshold_rampup_steps == 4 * default.threshold_rampup_steps == 2400
  assert longer.pseudo_label_rampup_steps == 4 * default.pseudo_label_rampup_steps
