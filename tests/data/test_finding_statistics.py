"""The shipped CheXpert label-set table: consistent, and sampling follows it."""

import gzip
import os

import numpy as np
import pytest

from mlsup_jax.data.phantoms import finding_statistics as fs


def test_the_shipped_table_is_consistent():
  patterns, counts = fs.load_pattern_table()
  assert patterns.shape[1] == len(fs.FINDINGS) == 14
  assert len(np.unique(patterns, axis=0)) == len(patterns)  # every label set once
  assert np.all(np.diff(counts) <= 0)  # most frequent first
  prevalence = (patterns * counts[:, None]).sum(0) / counts.sum()
  # Published CheXpert training prevalences (U-Zeros, frontal) are in these ranges.
  names = dict(zip(fs.FINDINGS, prevalence, strict=True))
  assert 0.40 < names["Lung Opacity"] < 0.55
  assert 0.35 < names["Pleural Effusion"] < 0.45
  assert 0.05 < names["No Finding"] < 0.12
  assert names["Pleural Other"] < 0.03
  # Exact label-set matches are rare: two random images share their set with probability < 5 %.
  p = counts / counts.sum()
  assert float(np.sum(p**2)) < 0.05


def test_sampling_follows_the_table():
  patterns, counts = fs.load_pattern_table()
  labels = fs.sample_label_sets(np.random.default_rng(0), 20000)
  expected = (patterns * counts[:, None]).sum(0) / counts.sum()
  np.testing.assert_allclose(labels.mean(0), expected, atol=0.015)
  # Co-occurrence too (not independent findings): opacity with effusion.
  both = np.mean(labels[:, 3] & labels[:, 10])
  joint = ((patterns[:, 3] & patterns[:, 10]) * counts).sum() / counts.sum()
  assert both == pytest.approx(joint, abs=0.015)


def test_derivation_from_a_csv(tmp_path):
  header = "Path,Frontal/Lateral," + ",".join(fs.FINDINGS)
  rows = [
    "a,Frontal," + ",".join(["1.0"] + [""] * 13),
    "b,Frontal," + ",".join(["", "-1.0", "1.0"] + [""] * 11),
    "c,Frontal," + ",".join(["1.0"] + [""] * 13),
    "d,Lateral," + ",".join(["1.0"] + [""] * 13),
  ]
  path = os.path.join(tmp_path, "labels.csv.gz")
  with gzip.open(path, "wt") as f:
    f.write("\n".join([header, *rows]) + "\n")
  patterns, counts, covered = fs.derive_pattern_table(path)
  assert counts.tolist() == [2, 1] and covered == 1.0
  assert patterns[1].tolist() == [0, 0, 1] + [0] * 11  # uncertain (−1) → 0
  out = os.path.join(tmp_path, "table.csv")
  fs.write_pattern_table(out, patterns, counts, covered, "test")
  loaded, loaded_counts = fs.load_pattern_table(out)
  np.testing.assert_array_equal(loaded, patterns)
  with pytest.raises(ValueError, match="lacks"):
    bad = os.path.join(tmp_path, "bad.csv")
    with open(bad, "w") as f:
      f.write("Path,Sex\nx,F\n")
    fs.derive_pattern_table(bad)
