"""OSCARS's pieces: annotations source, anomaly squashing, the retrieval evaluation with S@K."""

import numpy as np
import pytest

from configs import embedding_retrieval
from mlsup_jax.data.sources import build_source
from mlsup_jax.methods.embedding_retrieval import EmbeddingRetrievalMethod
from mlsup_jax.pipelines.oscars import squash

BASE = {"name": "phantom_radiograph", "num_cases": 4, "image_size": 32}


def test_annotated_source_adds_values_and_rejects_bad_files(tmp_path):
  path = tmp_path / "a.npz"
  np.savez(path, bin=np.array([3, 1, 0, 2]), anomaly=np.linspace(0, 1, 4))
  source = build_source({"name": "annotated", "base": BASE, "arrays_file": str(path)})
  assert int(source[1]["bin"]) == 1 and source[3]["anomaly"] == 1.0
  np.testing.assert_array_equal(source.class_ids, build_source(BASE).class_ids)
  with pytest.raises(ValueError, match="does not exist"):
    build_source({"name": "annotated", "base": BASE, "arrays_file": str(tmp_path / "no.npz")})
  np.savez(tmp_path / "short.npz", bin=np.zeros(3))
  with pytest.raises(ValueError, match="3 entries for a source of 4"):
    build_source({"name": "annotated", "base": BASE, "arrays_file": str(tmp_path / "short.npz")})
  np.savez(tmp_path / "clash.npz", class_id=np.zeros(4))
  with pytest.raises(ValueError, match="already have"):
    build_source({"name": "annotated", "base": BASE, "arrays_file": str(tmp_path / "clash.npz")})
  with pytest.raises(ValueError, match="no arrays"):
    build_source({"name": "annotated", "base": BASE, "arrays_file": str(path), "keys": ("query",)})


def test_squash_standardises_per_class_on_the_reference_images():
  scores = np.array([1.0, 3.0, 2.0, 100.0, 300.0, 200.0])
  classes = np.array([0, 0, 0, 1, 1, 1])
  a = squash(scores, classes, np.array([True, True, False, True, True, False]))
  # Each class's reference mean maps to 0.5, whatever the class's scale.
  np.testing.assert_allclose(a[[2, 5]], 0.5)
  np.testing.assert_allclose(a[:2], a[3:5])
  assert np.all((a > 0) & (a < 1))


def test_evaluate_reports_the_thesis_metrics_and_outlier_sensitivity():
  config = embedding_retrieval.get_config("smoke")
  method = EmbeddingRetrievalMethod.__new__(EmbeddingRetrievalMethod)
  method.config = config
  with config.unlocked():
    config.eval.ks = (1, 2)
  # One query (class 0, anomaly 0.2); database: class 0 at anomalies 0.3 and 0.9, class 1.
  outputs = {
    "embedding": np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.95, -0.05]]),
    "class_id": np.array([0, 0, 0, 1]),
    "anomaly": np.array([0.2, 0.3, 0.9, 0.5]),
    "query": np.array([1, 0, 0, 0]),
  }
  report = method.evaluate(outputs)
  # Ranking by cosine: item 3 (class 1), then item 1 (class 0, |0.3 − 0.2| = 0.1), then item 2.
  assert report["precision@1/single"] == 0.0 and report["hit_rate@2/single"] == 1.0
  np.testing.assert_allclose(report["outlier_sensitivity@2"], 0.1)
  assert np.isnan(report["outlier_sensitivity@1"]) and report["outlier_sensitivity@1/queries"] == 0
