"""Every method config has a `full` size at its paper's scale (issue 28 point 3), or says why not.

Cheap: the configs are resolved and their methods built; nothing is compiled or generated at
full size (`benchmarks/device_suite.py` times them on accelerators).
"""

from __future__ import annotations

import importlib

import pytest

from mlsup_jax.core.config_resolution import resolve_config
from mlsup_jax.core.run_setup import build_method


def _features(config):
  model = config.model
  if "backbone" in model:  # MORSE wraps its backbone.
    model = model.backbone
  for key in ("features", "backbone_features", "base_width", "width"):
    if key in model:
      return model[key]
  return None


def _image_side(config):
  source = config.data.train_source
  while "image_size" not in source and "base" in source:
    source = source.base
  return source.get("image_size")


# config → (documented image side of the training source, global batch, widths); None where the
# config's data section has no image size (the anomaly datasets: set by `anomaly_data`).
FULL = {
  "scunet": (1024, 32, None),  # 1024² tiles, cropped to the thesis's 512² patches.
  "maxquery": (128, 32, (32, 64, 128, 256, 320)),
  "segmentation": (128, 32, (32, 64, 128, 256, 320)),
  "tend": (None, 32, 16),
  "cvad": (None, 32, None),
  "reconstruction_detector": (None, 32, None),
  "image_classifier": (256, 32, None),
  "embedding_retrieval": (224, 64, None),
  "pms": (224, 64, None),
  "mcpm": (128, 16, (32, 64, 128, 256, 320)),
  "pint": (128, 16, (32, 64, 128, 256, 320)),
  "morse": (224, 24, (16, 32, 64, 128, 256)),
  "semi_supervised": (256, 4, (16, 32, 64, 128, 256)),
  "ltuda": (256, 1, (16, 32, 64, 128, 256)),
}


@pytest.mark.parametrize("name", sorted(FULL))
def test_full_config_resolves_at_its_documented_scale(name):
  module = importlib.import_module(f"configs.{name}")
  assert "full" in module.__doc__  # The size is documented with the other options.
  config = resolve_config(module.get_config("full"))
  side, batch, widths = FULL[name]
  assert config.data.batch_size == batch
  if side is not None:
    assert _image_side(config) == side
  if widths is not None:
    features = _features(config)
    assert (tuple(features) if isinstance(widths, tuple) else features) == widths
  if name == "ltuda":
    with config.unlocked():
      config.ltuda.check_labels = False  # Reads every full-size label map: not in CI.
  method = build_method(config)
  assert method.stages and all(stage.num_steps >= 0 for stage in method.stages)
  # Full is bigger than the default run in steps or pixels, never smaller.
  default = module.get_config(None)
  if side is not None:
    assert side >= _image_side(default)


def test_cfr_documents_why_it_has_no_full_size():
  from configs import cfr

  assert "No `full` size" in cfr.__doc__
  with pytest.raises(ValueError, match="Unknown config option 'full'"):
    cfr.get_config("full")


@pytest.mark.parametrize("name", ["mcpm", "morse", "semi_supervised", "ltuda"])
def test_full_excludes_the_other_sizes(name):
  module = importlib.import_module(f"configs.{name}")
  with pytest.raises(ValueError):
    module.get_config("full,smoke")
