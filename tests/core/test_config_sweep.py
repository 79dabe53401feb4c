"""Every config under configs/ builds its method, passes the key checks, and traces every stage.

For each config (and its variants), `RunSetup` resolves the config, builds the method and the
input pipeline and checks the declared batch keys against the first examples; then, for every
stage, `jax.eval_shape` runs the state as it is when the stage begins and one train step. No
training, no compilation: seconds per config. A new config under configs/ is picked up by the
glob, so none runs untested.
"""

from __future__ import annotations

import importlib
import pathlib

import jax
import ml_collections
import pytest

from mlsup_jax.core.run_setup import RunSetup

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"
# Variants besides `smoke` worth tracing (each is a different method, network or data layout).
VARIANTS = {
  "maxquery": ["smoke,variant=noqd", "smoke,variant=unet", "smoke,3d"],
  "mcpm": ["smoke,variant=mwnet", "smoke,variant=unet", "smoke,target=all"],
  "pint": ["smoke,variant=none", "smoke,variant=pnt"],
  "semi_supervised": [
    *(f"smoke,kind={k}" for k in ("labelled_only", "uamt", "fixmatch", "cps", "action")),
    "smoke,kind=action_pp",
    "smoke,kind=action,pretrain",
    "smoke,kind=arco",
    "smoke,kind=mona",
    "smoke,kind=action,sampling=spatial,antithetic",
  ],
  "reconstruction_detector": ["smoke,network=vae"],
  "tend": ["smoke,dataset=ivc_filter"],
  "segmentation": ["smoke,3d"],
  "pms": ["smoke,method=bce", "smoke,norelu,bce_sum"],
  "embedding_retrieval": [
    f"smoke,loss={loss}" for loss in ("triplet", "supcon", "multi_similarity", "circle", "fastap")
  ],
  "ltuda": [
    *(f"smoke,method={m}" for m in ("ltuda_cda", "naive", "marginal", "full")),
    "smoke,mixing=carvemix",
    "smoke,3d",
  ],
}


def _config_names() -> list[str]:
  return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem != "__init__")


def _cases():
  return [(name, arg) for name in _config_names() for arg in ["smoke", *VARIANTS.get(name, [])]]


def _method_configs(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
  """The config itself, or the method configs a pipeline config holds (e.g. MedShift's)."""
  if "method" in config:
    return [config]
  return [value for value in config.values() if isinstance(value, ml_collections.ConfigDict)
          and "method" in value and "data" in value]  # fmt: skip


def test_every_config_file_is_swept():
  assert set(VARIANTS) <= set(_config_names())
  assert len(_config_names()) >= 10, _config_names()
  assert not (CONFIG_DIR / "common.py").exists(), "helpers live in configs/sections/"


def _with_annotations(config, folder: pathlib.Path):
  """The retrieval config reads the OSCARS pipeline's annotation files: write stand-ins."""
  import numpy as np

  from mlsup_jax.data.sources import build_source

  with config.unlocked():
    for name, keys in (("train_source", ("bin", "anomaly")), ("eval_source", ("anomaly", "query"))):
      n = len(build_source(config.data[name].base))
      path = folder / f"{name}.npz"
      np.savez(path, **{key: np.arange(n) % 2 for key in keys})
      config.data[name].arrays_file = str(path)
  return config


# Configs whose sources read files a pipeline writes: how the sweep provides them.
PIPELINE_FILES = {"embedding_retrieval": _with_annotations}


@pytest.mark.parametrize("name, arg", _cases())
def test_config_builds_and_every_stage_traces(name, arg, tmp_path):
  config = importlib.import_module(f"configs.{name}").get_config(arg)
  if name in PIPELINE_FILES:
    config = PIPELINE_FILES[name](config, tmp_path)
  method_configs = _method_configs(config)
  assert method_configs, f"configs/{name}.py holds no method config"
  for method_config in method_configs:
    run = RunSetup(method_config, devices=jax.devices()[:1])
    rng = jax.random.key(0)
    for index, stage in enumerate(run.stages):
      abstract_state, _ = run.state_shardings(index)
      new_state, metrics = jax.eval_shape(stage.train_step, abstract_state, run.example_batch, rng)
      assert jax.tree.structure(new_state) == jax.tree.structure(abstract_state), stage.name
      assert metrics, f"{name}:{arg} stage {stage.name} reports no metric"
      assert all(m.shape == () for m in jax.tree.leaves(metrics)), stage.name
