"""`relabel`: class lookup under the noise wrapper, attributes kept, clear errors."""

import numpy as np
import pytest

from configs import mcpm, pint
from mlsup_jax.data.sources import build_source
from mlsup_jax.data.sources.corruption import NoisyLabelSource
from mlsup_jax.data.sources.relabel import RelabelSource
from mlsup_jax.data.validation import DataError


class _Labels:
  """Three 4×4 examples with label values 0..4 (and a case id each)."""

  case_ids = ("a", "b", "c")

  def __len__(self):
    return 3

  def __getitem__(self, index):
    label = (np.arange(16).reshape(4, 4) + index) % 5
    return {"image": np.zeros((4, 4, 1), np.float32), "label": label.astype(np.int32)}


def test_maps_every_value_and_keeps_the_rest():
  source = RelabelSource(_Labels(), mapping=(0, 1, 1, 2, 2))
  for i in range(3):
    base = _Labels()[i]
    out = source[i]
    np.testing.assert_array_equal(out["label"], np.array([0, 1, 1, 2, 2])[base["label"]])
    assert out["label"].dtype == np.int32
    np.testing.assert_array_equal(out["image"], base["image"])
  assert len(source) == 3 and source.num_classes == 3 and source.case_ids == _Labels.case_ids


def test_noise_acts_on_the_relabelled_masks():
  """Under `noisy_labels`, the corruption dilates the merged foreground: a dilation of
  'liver ∪ tumours' as one class, and clean_label is the merged label."""
  config = mcpm.get_config("smoke,target=liver,ratio=1.0")
  source = build_source(config.data.train_source)
  assert isinstance(source, NoisyLabelSource) and isinstance(source.base, RelabelSource)
  for i in range(len(source)):
    example = source[i]
    assert set(np.unique(example["label"])) <= {0, 1}
    assert set(np.unique(example["clean_label"])) <= {0, 1}
    # Dilation only grows the foreground.
    assert np.all(example["label"] >= example["clean_label"])
  evaluation = build_source(config.data.eval_source)
  assert set(np.unique(evaluation[0]["label"])) <= {0, 1}


@pytest.mark.parametrize(
  "target, names", [("liver", ("background", "liver")), ("lesion", ("background", "lesion"))]
)
def test_binary_targets_in_the_noisy_label_configs(target, names):
  for module, arg in ((mcpm, f"small,target={target}"), (pint, f"small,target={target}")):
    config = module.get_config(arg)
    assert config.model.num_classes == 2 and tuple(config.data.class_names) == names
  assert pint.get_config(f"small,target={target}").pint.threshold_scale == pytest.approx(np.log(2))
  with pytest.raises(ValueError, match="Unknown target 'kidney'"):
    mcpm.get_config("target=kidney")


def test_bad_mappings_and_labels_are_named():
  with pytest.raises(ValueError, match="non-empty"):
    RelabelSource(_Labels(), mapping=())
  with pytest.raises(ValueError, match="≥ 0"):
    RelabelSource(_Labels(), mapping=(0, -1))
  with pytest.raises(DataError, match=r"example 0 has label values in \[0, 4\].*0\.\.2"):
    RelabelSource(_Labels(), mapping=(0, 1, 1))[0]
