"""The OTDD scaling benchmark: one tiny size end to end, the exponent fit, the results files."""

import json

import numpy as np
import pytest

from benchmarks import otdd_scaling, report


def test_fit_exponent_recovers_a_power_law():
  sizes = np.array([1000, 2000, 5000, 10000])
  assert otdd_scaling.fit_exponent(sizes, 3e-6 * sizes**2.0) == pytest.approx(2.0)
  assert otdd_scaling.fit_exponent(sizes, 0.5 * sizes**1.3) == pytest.approx(1.3)


def test_batch_size_flag_maps_to_otdd_argument():
  assert otdd_scaling.parse_batch_size("auto") == "auto"
  assert otdd_scaling.parse_batch_size("dense") is None
  assert otdd_scaling.parse_batch_size("256") == 256


def test_synthetic_embeddings_have_the_requested_norm_and_classes():
  features, labels = otdd_scaling.synthetic_embeddings(40, 4, 8, seed=0, shift=0.1, norm=3.0)
  assert features.shape == (40, 8) and features.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(features, axis=1), 3.0, rtol=1e-5)
  np.testing.assert_array_equal(np.bincount(labels), [10, 10, 10, 10])


def test_one_size_is_timed_and_recorded(tmp_path):
  leg = otdd_scaling.benchmark_size(48, classes=3, dim=4, repeats=1, norm=3.0)
  assert leg["batch_size"] == 48 and leg["converged"] and leg["costs"] == "dense"
  assert leg["step_ms_median"] > 0 and leg["ms_per_iteration"] > 0 and leg["distance"] > 0
  assert leg["memory"]["peak_bytes"] is None or leg["memory"]["peak_bytes"] > 48 * 48 * 4
  env = report.environment()
  path = report.write_results(str(tmp_path), "otdd_scaling n=48", {"jit": leg}, env)
  saved = json.loads(open(path).read())["results"]["otdd_scaling n=48"]["legs"]["jit"]
  assert saved["iterations"] == leg["iterations"]
  assert "| otdd_scaling n=48 | jit |" in report.write_markdown(str(tmp_path))
