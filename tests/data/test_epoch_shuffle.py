"""`epoch_shuffle` gives grain's shuffle order exactly (docs/ seeded results depend on it)."""

from __future__ import annotations

import pickle

import grain
import numpy as np
import pytest

from mlsup_jax.data import epoch_shuffle


def _grain_order(length: int, seed: int, positions) -> list[int]:
  shuffled = grain.MapDataset.range(length).shuffle(seed=seed).repeat(None)
  return [shuffled[int(i)] for i in positions]


@pytest.mark.parametrize("length", [1, 2, 3, 8, 16, 47, 100, 1000, 40_000])
@pytest.mark.parametrize("seed", [0, 7, 2**32 - 1])
def test_epoch_permutation_is_grains_index_shuffle(length, seed):
  perm = epoch_shuffle.epoch_permutation(length, seed)
  positions = np.arange(length) if length <= 1000 else np.arange(0, length, 97)
  assert perm[positions].tolist() == _grain_order(length, seed, positions)
  np.testing.assert_array_equal(np.sort(perm), np.arange(length))  # a permutation


def test_epoch_permutation_beyond_the_16_bit_block_and_at_grains_edge_case():
  # 70 000 elements: an 18-bit block. 65 537: max_index = 2^16, which grain's 16-bit block cannot
  # produce (its order repeats an element there); the same order either way.
  for length in (70_000, 65_537):
    positions = np.r_[np.arange(0, length, 331), length - 1]
    perm = epoch_shuffle.epoch_permutation(length, 11)
    assert perm[positions].tolist() == _grain_order(length, 11, positions)


def test_shuffle_matches_grain_across_epochs_and_the_seed_wrap():
  for length, seed in ((5, 3), (10, 2**32 - 2), (47, 123)):
    ours = epoch_shuffle.shuffle(grain.MapDataset.range(length), seed).repeat(None)
    positions = range(4 * length + 3)  # four epochs; epoch e uses (seed + e) mod 2^32
    assert [ours[i] for i in positions] == _grain_order(length, seed, positions)


def test_shuffled_dataset_pickles_for_worker_processes():
  ours = epoch_shuffle.shuffle(grain.MapDataset.range(20), 5)
  before = [ours[i] for i in range(20)]
  restored = pickle.loads(pickle.dumps(ours))
  assert [restored[i] for i in range(20)] == before


def test_large_datasets_use_grains_own_shuffle_and_bad_seeds_are_refused():
  large = epoch_shuffle.shuffle(grain.MapDataset.range(2**21), 1)
  assert not isinstance(large, epoch_shuffle.TabledShuffle)
  assert large[5] == _grain_order(2**21, 1, [5])[0]
  with pytest.raises(ValueError, match="Seed must be"):
    epoch_shuffle.TabledShuffle(grain.MapDataset.range(4), 2**32)
