"""LTUDA: pseudo-label merging, cross-set pairs, bad input before training, and a whole run on
3-D NIfTI volumes with their own label values turned into partially labelled sub-datasets (both
stages, CarveMix; the 2-D phantom runs are the learns test's)."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import nibabel
import numpy as np
import pytest

from configs import ltuda as ltuda_config
from mlsup_jax.core import trainer
from mlsup_jax.data.validation import DataError
from mlsup_jax.methods.ltuda import LtudaMethod


def _config(options: str = ""):
  return ltuda_config.get_config("smoke" + (f",{options}" if options else ""))


def test_pseudo_labels_keep_annotated_organs_and_take_the_teacher_for_the_others():
  method = LtudaMethod(_config())
  # Teacher logits for 2 images of 1 × 4 pixels, 4 organ channels (liver, kidneys, spleen, ...).
  probs = np.full((2, 1, 4, 4), 0.1, np.float32)
  probs[:, 0, 1, 0] = 0.9  # liver predicted at pixel 1 in both images
  probs[:, 0, 2, 2] = 0.8  # spleen predicted at pixel 2
  probs[:, 0, 3, 3] = 0.4  # pancreas below the threshold at pixel 3
  logits = jnp.log(probs / (1 - probs))
  method.forward = lambda params, image: {"logits": logits}
  state = types.SimpleNamespace(extra={"teacher": None})
  data = {
    "image": jnp.zeros((2, 1, 4, 1)),
    # Image 0 annotates the liver (label at pixel 0 only); image 1 annotates the spleen.
    "label": jnp.array([[[1, 0, 0, 0]], [[0, 0, 0, 0]]]),
    "known": jnp.array([[True, False, False, False], [False, False, True, False]]),
  }
  pseudo = np.asarray(method.pseudo_labels(state, data))
  # Image 0: its liver label kept; the teacher's liver at pixel 1 is NOT taken (the liver is
  # annotated there, so pixel 1 is background); its spleen prediction is.
  assert pseudo[0, 0].tolist() == [1, 0, 3, 0]
  # Image 1: the spleen is annotated (nothing labelled, so no spleen); liver from the teacher.
  assert pseudo[1, 0].tolist() == [0, 1, 0, 0]


def test_cross_set_partners_come_from_another_sub_dataset():
  config = _config()
  method = LtudaMethod(config)
  assert method.streams == ("", "kidneys", "pancreas", "spleen")
  # Image i is mixed with image i + b (b = one stream's batch): always another stream.
  batch = method.stream_batch
  stream_of = np.repeat(np.arange(len(method.streams)), batch)
  assert (stream_of != np.roll(stream_of, -batch)).all()


def _with(config, **changes):
  with config.unlocked():
    for path, value in changes.items():
      *parents, leaf = path.split(".")
      section = config
      for parent in parents:
        section = section[parent]
      section[leaf] = value
  return config


def test_bad_sub_datasets_are_one_clear_error_before_training():
  with pytest.raises(ValueError, match="same batch size"):
    LtudaMethod(_with(_config(), **{"data.streams.spleen.batch_size": 3}))
  with pytest.raises(ValueError, match=r"not in the class map's organs"):
    LtudaMethod(_with(_config(), **{"data.streams.spleen.source.known": ("gallbladder",)}))
  with pytest.raises(ValueError, match="no examples"):
    LtudaMethod(_with(_config(), **{"data.streams.spleen.source.indices": ()}))
  with pytest.raises(ValueError, match="sub-datasets"):
    LtudaMethod(_with(_config(), **{"data.streams.spleen.source": {"name": "phantom_abdomen"}}))
  with pytest.raises(ValueError, match="model.num_classes"):
    LtudaMethod(_with(_config(), **{"model.num_classes": 5}))
  with pytest.warns(UserWarning, match=r"No sub-dataset annotates \['spleen'\]"):
    LtudaMethod(_with(_config(), **{"data.streams.spleen.source.known": ("liver",)}))


def _write_volumes(root, count: int, seed: int) -> None:
  """Abdomen-like volumes [x, y, z] in HU with BTCV-style label values (6 liver, 2 / 3 kidneys,
  1 spleen, 11 pancreas)."""
  rng = np.random.default_rng(seed)
  (root / "images").mkdir(parents=True)
  (root / "labels").mkdir()
  grid = np.stack(np.meshgrid(*(np.arange(n) for n in (32, 32, 8)), indexing="ij"), -1)
  for i in range(count):
    image = rng.normal(-80.0, 20.0, (32, 32, 8)).astype(np.float32)
    label = np.zeros((32, 32, 8), np.int16)
    for value, centre, radius, hu in (
      (6, (10, 12), 7, 60.0),
      (2, (24, 22), 3, 150.0),
      (3, (24, 8), 3, 150.0),
      (1, (8, 26), 3, 110.0),
      (11, (18, 18), 2, 40.0),
    ):
      shift = rng.integers(-1, 2, 2)
      inside = np.sum((grid[..., :2] - (np.asarray(centre) + shift)) ** 2, -1) <= radius**2
      label[inside] = value
      image[inside] = hu + rng.normal(0, 10.0, inside.sum())
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    nibabel.save(nibabel.Nifti1Image(image, affine), root / "images" / f"case{i:02d}.nii.gz")
    nibabel.save(nibabel.Nifti1Image(label, affine), root / "labels" / f"case{i:02d}.nii.gz")


def test_nifti_volumes_become_partially_labelled_sub_datasets_and_train_in_3d(tmp_path):
  train_root, eval_root = tmp_path / "train", tmp_path / "eval"
  _write_volumes(train_root, 8, 0)
  _write_volumes(eval_root, 2, 1)
  class_map = {"0": 0, "6": 1, "2": 2, "3": 2, "1": 3, "11": 4}
  config = _config("3d,mixing=carvemix")
  organs = ltuda_config.ORGANS

  def sub_dataset(root, known, indices):
    return {
      "name": "partial_labels",
      "base": {"name": "nifti_folder", "root": str(root)},
      "organs": organs,
      "known": tuple(known),
      "class_map": class_map,
      "indices": tuple(indices),
      "title": "+".join(known),
    }

  with config.unlocked():
    config.data.train_source = sub_dataset(train_root, ("liver",), (0, 1))
    for i, organ in enumerate(organs[1:]):
      config.data.streams[organ].source = sub_dataset(train_root, (organ,), (2 + 2 * i, 3 + 2 * i))
    # Fully labelled evaluation: the wrapper with every organ known is the relabelling.
    config.data.eval_source = sub_dataset(eval_root, organs, (0, 1))
    config.data.selection_source = sub_dataset(eval_root, organs, (0, 1))
    config.data.rotate_axes = (0, 1)  # NIfTI's stored (x, y, z): rotate in the axial plane
    config.eval.spacing = (1.5, 1.5, 3.0)
  # A label value the class map does not name (7, e.g. a gallbladder) in the last volume of a
  # sub-dataset: one clear error before anything trains.
  bad = nibabel.load(train_root / "labels" / "case07.nii.gz")
  values = np.asarray(bad.dataobj).copy()
  values[0, 0, 0] = 7
  nibabel.save(nibabel.Nifti1Image(values, bad.affine), train_root / "labels" / "case07.nii.gz")
  with pytest.raises(DataError, match=r"example 7 has label value\(s\) \[7\]"):
    LtudaMethod(config)
  values[0, 0, 0] = 0
  nibabel.save(nibabel.Nifti1Image(values, bad.affine), train_root / "labels" / "case07.nii.gz")
  results = trainer.train_and_evaluate(config, str(tmp_path / "run"), devices=jax.devices()[:1])
  assert results["num_images"] == 2
  for organ in organs:
    assert 0.0 <= results[f"dice/{organ}"] <= 1.0
  # Table 9's variances of the evaluated features, and both stages ran (the PDA stage's metrics).
  assert results["intra_class_variance"] >= 0 and results["inter_class_variance"] > 0
  metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
  assert "unlabelled/loss/alignment/prototype_contrast" in metrics
