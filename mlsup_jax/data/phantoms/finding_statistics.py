"""Label statistics of real chest radiographs, for multi-label phantoms (PMS retrieval).

Exact label-set matches are rare in real multi-label data — which is what makes multi-label
retrieval hard — so a phantom whose findings were drawn independently would be far too easy.
This module ships a fixed table of the **label sets** (14-finding patterns) of CheXpert's
training images and their counts (`chexpert_patterns.csv` beside it), and samples label sets
from it, so frequencies *and* co-occurrences follow the real data.

Source: the CheXpert training labels (Irvin et al., "CheXpert: A Large Chest Radiograph Dataset
with Uncertainty Labels and Expert Comparison", AAAI 2019) as shipped in the `torchxrayvision`
1.5.7 wheel (`torchxrayvision/data/chexpert_train.csv.gz`; 223,414 images). Derived once with

  python -m mlsup_jax.data.phantoms.finding_statistics --chexpert=chexpert_train.csv.gz

keeping frontal images only, with the U-Zeros policy (uncertain −1 and blank → 0, as the
thesis's PMS chapter assumes), and the `MAX_PATTERNS` most frequent label sets (the rest, a
long tail of rare sets, is dropped; the header line records the share covered). Only counts of
label sets are stored, no image or patient data.
"""

from __future__ import annotations

import csv
import gzip
import os
from collections import Counter

import numpy as np

FINDINGS = (
  "No Finding",
  "Enlarged Cardiomediastinum",
  "Cardiomegaly",
  "Lung Opacity",
  "Lung Lesion",
  "Edema",
  "Consolidation",
  "Pneumonia",
  "Atelectasis",
  "Pneumothorax",
  "Pleural Effusion",
  "Pleural Other",
  "Fracture",
  "Support Devices",
)
# The thesis's two-letter codes (Table 6.3), in the order of FINDINGS: for figures and tables.
FINDING_CODES = ("NF", "EC", "CM", "LO", "LL", "EM", "CD", "PN", "AT", "PX", "PE", "PO", "FT", "SD")
MAX_PATTERNS = 2000
TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chexpert_patterns.csv")

__all__ = [
  "FINDING_CODES",
  "FINDINGS",
  "derive_pattern_table",
  "load_pattern_table",
  "sample_label_sets",
]


def derive_pattern_table(
  path: str, max_patterns: int = MAX_PATTERNS
) -> tuple[np.ndarray, np.ndarray, float]:
  """Label-set counts of a CheXpert-format CSV (frontal images, U-Zeros).

  Returns:
    `(patterns [P, 14] uint8, counts [P] int64, share of frontal images covered)`, most
    frequent first (ties by pattern).
  """
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt", newline="") as f:
    reader = csv.DictReader(f)
    missing = [name for name in FINDINGS if name not in (reader.fieldnames or ())]
    if missing:
      raise ValueError(f"{path} lacks the finding columns {missing}.")
    counter: Counter = Counter()
    for row in reader:
      if row.get("Frontal/Lateral", "Frontal") != "Frontal":
        continue
      counter[tuple(int(row[name].strip() in ("1", "1.0")) for name in FINDINGS)] += 1
  total = sum(counter.values())
  if not total:
    raise ValueError(f"{path} has no frontal images.")
  ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:max_patterns]
  patterns = np.asarray([p for p, _ in ranked], np.uint8)
  counts = np.asarray([c for _, c in ranked], np.int64)
  return patterns, counts, float(counts.sum() / total)


def write_pattern_table(path: str, patterns, counts, covered: float, source: str) -> None:
  """The CSV `load_pattern_table` reads: a comment header, then `pattern,count` rows."""
  with open(path, "w") as f:
    f.write(
      f"# label sets of {source}; frontal, U-Zeros; {len(counts)} most frequent, covering "
      f"{100 * covered:.2f} % of the frontal images; bits in the order of FINDINGS\n"
    )
    f.write("pattern,count\n")
    for pattern, count in zip(patterns, counts, strict=True):
      f.write("".join(str(int(b)) for b in pattern) + f",{int(count)}\n")


def load_pattern_table(path: str = TABLE) -> tuple[np.ndarray, np.ndarray]:
  """`(patterns [P, 14] uint8, counts [P] int64)` of the shipped table."""
  patterns, counts = [], []
  with open(path) as f:
    for line in f:
      if line.startswith("#") or line.startswith("pattern"):
        continue
      bits, count = line.strip().split(",")
      patterns.append([int(b) for b in bits])
      counts.append(int(count))
  return np.asarray(patterns, np.uint8), np.asarray(counts, np.int64)


def sample_label_sets(rng: np.random.Generator, n: int, path: str = TABLE) -> np.ndarray:
  """`[n, 14]` uint8 label sets drawn with the table's frequencies.

  Example:
    >>> import numpy as np
    >>> from mlsup_jax.data.phantoms.finding_statistics import FINDINGS, sample_label_sets
    >>> labels = sample_label_sets(np.random.default_rng(0), 1000)
    >>> labels.shape, len(FINDINGS)
    ((1000, 14), 14)
  """
  patterns, counts = load_pattern_table(path)
  choice = rng.choice(len(counts), size=int(n), p=counts / counts.sum())
  return patterns[choice]


def main(argv=None) -> None:
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--chexpert", required=True, help="CheXpert train CSV (.csv or .csv.gz).")
  parser.add_argument("--out", default=TABLE)
  parser.add_argument("--max_patterns", type=int, default=MAX_PATTERNS)
  args = parser.parse_args(argv)
  patterns, counts, covered = derive_pattern_table(args.chexpert, args.max_patterns)
  source = "CheXpert train (torchxrayvision 1.5.7 chexpert_train.csv.gz)"
  write_pattern_table(args.out, patterns, counts, covered, source)
  print(f"{len(counts)} label sets covering {100 * covered:.2f} % of frontal images → {args.out}")


if __name__ == "__main__":
  main()
