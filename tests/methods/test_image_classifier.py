"""The CNN image classifier (MedShift's G): config traces, metrics, and it learns."""

import jax
import numpy as np
from sklearn.metrics import f1_score, precision_score

from configs import image_classifier as classifier_config
from mlsup_jax.core import trainer
from mlsup_jax.core.run_setup import RunSetup
from mlsup_jax.methods.image_classifier import classification_report


def test_config_builds_and_step_traces():
  setup = RunSetup(classifier_config.get_config("smoke"))
  abstract, _ = setup.state_shardings(0)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), setup.example_batch)
  _, metrics = jax.eval_shape(setup.stages[0].train_step, abstract, batch, setup.train_rng)
  assert set(metrics) >= {"loss", "accuracy"}


def test_report_matches_sklearn():
  rng = np.random.default_rng(0)
  labels, predictions = rng.integers(0, 4, 200), rng.integers(0, 5, 200)
  report = classification_report(labels, predictions)
  assert np.isclose(
    report["macro_f1"], f1_score(labels, predictions, labels=range(4), average="macro")
  )
  assert np.isclose(
    report["macro_precision"],
    precision_score(labels, predictions, labels=range(4), average="macro", zero_division=0),
  )
  assert np.isclose(report["accuracy"], np.mean(labels == predictions))


def test_learns_to_tell_modalities_apart(tmp_path):
  """Four modality phantoms at 32²: 80 steps of the smoke CNN beat chance (0.25) clearly.

  Measured: accuracy 0.646 on 48 test images (seed 0).
  """
  config = classifier_config.get_config("smoke")
  modalities = ("ct", "mr_brain", "ultrasound", "dermoscopy")
  with config.unlocked():
    for section, split, cases in ((config.data, "train", 160), (config.data, "test", 48)):
      key = "train_source" if split == "train" else "eval_source"
      section[key] = {"name": "phantom_modality", "split": split, "num_cases": cases, "seed": 0,
                      "modality": modalities, "image_size": 32}  # fmt: skip
    config.data.class_names = modalities
    config.model.num_classes = len(modalities)
    config.train.num_steps = 80
  results = trainer.train_and_evaluate(config, str(tmp_path))
  print(results)
  assert results["accuracy"] >= 0.5
