"""The multi-finding radiograph phantom: CheXpert's label statistics, determinism, findings."""

import numpy as np
import pytest

from mlsup_jax.data.phantoms.finding_statistics import load_pattern_table
from mlsup_jax.data.phantoms.multi_finding_radiograph import (
  FINDINGS,
  MultiFindingRadiographSource,
  label_set_stream,
)
from mlsup_jax.data.sources import build_source


def test_label_sets_follow_the_shipped_table():
  patterns, counts = load_pattern_table()
  expected = (patterns * counts[:, None]).sum(0) / counts.sum()
  sets = label_set_stream(0, "train", 20000)
  # 20,000 draws: the standard error of a prevalence p is ≤ 0.0036.
  np.testing.assert_allclose(sets.mean(0), expected, atol=0.015)
  # Co-occurrence too: effusion with support devices, as often as in the table.
  pe, sd = FINDINGS.index("Pleural Effusion"), FINDINGS.index("Support Devices")
  table_joint = np.sum(counts * (patterns[:, pe] & patterns[:, sd])) / counts.sum()
  assert abs(np.mean(sets[:, pe] & sets[:, sd]) - table_joint) < 0.015
  # Exact label-set matches are rare: many distinct sets, the commonest well under 10 %.
  _, frequency = np.unique(sets, axis=0, return_counts=True)
  assert len(frequency) > 300 and frequency.max() / len(sets) < 0.1


def test_deterministic_disjoint_splits_and_a_longer_source_extends_a_shorter_one():
  a = MultiFindingRadiographSource("train", 6, seed=3, image_size=32)
  b = MultiFindingRadiographSource("train", 10, seed=3, image_size=32)
  np.testing.assert_array_equal(a[4]["image"], b[4]["image"])
  np.testing.assert_array_equal(a.label_sets, b.label_sets[:6])
  test = MultiFindingRadiographSource("test", 6, seed=3, image_size=32)
  assert not np.array_equal(a[0]["image"], test[0]["image"])
  example = a[0]
  assert example["image"].dtype == np.float32 and example["image"].shape == (32, 32, 1)
  assert 0.0 <= example["image"].min() and example["image"].max() <= 1.0
  np.testing.assert_array_equal(example["labels"], a.label_sets[0])


@pytest.mark.parametrize("finding", [f for f in FINDINGS if f != "No Finding"])
def test_every_finding_changes_the_image_of_the_same_patient(finding):
  source = MultiFindingRadiographSource("train", 1, image_size=48)
  rng = lambda: np.random.default_rng([0, 0, 11])  # noqa: E731  same patient and exposure
  labels = np.zeros(len(FINDINGS))
  normal = source.render(rng(), labels)
  labels[FINDINGS.index(finding)] = 1
  changed = source.render(rng(), labels)
  difference = np.abs(changed - normal)
  # Visible (several grey levels somewhere) but local: most of the image is untouched.
  assert difference.max() > 0.05, finding
  assert np.mean(difference > 0.02) < 0.5, finding


def test_query_database_source_flags_queries():
  source = build_source({
    "name": "query_database",
    "queries": {"name": "phantom_multi_finding_radiograph", "split": "test", "num_cases": 2,
                "image_size": 32},
    "database": {"name": "phantom_multi_finding_radiograph", "split": "val", "num_cases": 3,
                 "image_size": 32},
  })  # fmt: skip
  assert [int(source[i]["query"]) for i in range(5)] == [1, 1, 0, 0, 0]
  assert source.case_ids[2] == "database/0"
  with pytest.raises(IndexError):
    source[5]
