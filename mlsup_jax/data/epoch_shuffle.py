"""grain's shuffle order, computed one epoch at a time instead of one element at a time.

`grain.MapDataset.shuffle(seed)` maps element `i` of epoch `e` through
`index_shuffle(i, max_index=n - 1, seed=seed + e, rounds=4)`: a 4-round Simon cipher on
`B = max(16, ceil(log2(n - 1)) rounded up to even)` bits, applied again and again until the
value falls below `n` (cycle walking). At the 16-bit minimum block that walk is ~65 536 / n
cipher calls per element: 7.75 ms per element at n = 8, 1.34 ms at n = 47 (measured; 60–86 % of
the smoke pipelines' CPU, docs/results/loop.md). `shuffle` below gives the **same order**
(tested element for element against grain's) from one vectorized pass per epoch: the cipher on
the whole `2^B` domain in numpy, then the walks of all `n` starting points by pointer jumping
(each pointer skips the out-of-range values of its target's path, doubling the distance per
round) — 3–6 ms per epoch at the 16-bit block, whatever `n` (measured, one core). The last two
epochs' permutations are kept, since a batch can straddle an epoch boundary and read threads run
ahead.

Above `2^MAX_TABLE_BITS` values in the domain (datasets of more than ~2^20 elements), where
grain's walks are a few cipher calls per element, `shuffle` returns grain's own shuffle.

Example:
  >>> import grain
  >>> data = grain.MapDataset.range(10)
  >>> [shuffle(data, seed=3)[i] for i in range(20)] == [
  ...   data.shuffle(seed=3).repeat(2)[i] for i in range(20)]
  True
"""

from __future__ import annotations

import math
import threading

import grain
import numpy as np

MAX_TABLE_BITS = 20  # Above this block size, grain's per-element walks are short: use them.
_ROUNDS = 4  # What `grain.MapDataset.shuffle` uses.
_KEPT_EPOCHS = 2
_UINT32 = 0xFFFFFFFF


def block_bits(max_index: int) -> int:
  """The cipher's block size for `max_index` (> 0), as grain computes it."""
  bits = math.ceil(math.log2(max_index))
  return max(bits + bits % 2, 16)


def seed_sequence(seed: int, count: int) -> list[int]:
  """`std::seed_seq{seed}.generate(count values)` ([rand.util.seedseq], C++11): the round keys."""
  values = [seed & _UINT32]
  size = len(values)
  if count >= 623:
    t = 11
  elif count >= 68:
    t = 7
  elif count >= 39:
    t = 5
  elif count >= 7:
    t = 3
  else:
    t = (count - 1) // 2
  p = (count - t) // 2
  q = p + t
  out = [0x8B8B8B8B] * count

  def mix(x: int) -> int:
    return x ^ (x >> 27)

  for k in range(max(size + 1, count)):
    r1 = (1664525 * mix(out[k % count] ^ out[(k + p) % count] ^ out[(k - 1) % count])) & _UINT32
    extra = size if k == 0 else (k % count + values[k - 1] if k <= size else k % count)
    r2 = (r1 + extra) & _UINT32
    out[(k + p) % count] = (out[(k + p) % count] + r1) & _UINT32
    out[(k + q) % count] = (out[(k + q) % count] + r2) & _UINT32
    out[k % count] = r2
  start = max(size + 1, count)
  for k in range(start, start + count):
    total = (out[k % count] + out[(k + p) % count] + out[(k - 1) % count]) & _UINT32
    r3 = (1566083941 * mix(total)) & _UINT32
    r4 = (r3 - k % count) & _UINT32
    out[(k + p) % count] ^= r3
    out[(k + q) % count] ^= r4
    out[k % count] = r4
  return out


def _cipher_table(bits: int, seed: int) -> np.ndarray:
  """Simon (`bits`-bit block, grain's round keys and 4 rounds) of every value: `[2^bits]`."""
  word = bits // 2
  mask = np.uint64((1 << word) - 1)
  values = np.arange(1 << bits, dtype=np.uint64)
  left, right = (values >> np.uint64(word)) & mask, values & mask

  def rotl(x, r):
    return ((x << np.uint64(r)) | (x >> np.uint64(word - r))) & mask

  def simon(x):
    return (rotl(x, 1) & rotl(x, 8)) ^ rotl(x, 2)

  keys = seed_sequence(seed, _ROUNDS)
  for first, second in zip(keys[::2], keys[1::2], strict=True):
    left ^= simon(right) ^ (np.uint64(first) & mask)
    right ^= simon(left) ^ (np.uint64(second) & mask)
  return ((left << np.uint64(word)) | right).astype(np.int64)


def epoch_permutation(length: int, seed: int) -> np.ndarray:
  """`[length]` int64: position `i` of the epoch reads element `perm[i]` — grain's
  `index_shuffle(i, max_index=length - 1, seed=seed, rounds=4)` for every `i` at once.

  Example:
    >>> epoch_permutation(5, seed=0).tolist() == [
    ...   grain.MapDataset.range(5).shuffle(seed=0)[i] for i in range(5)]
    True
  """
  if length == 1:
    return np.zeros(1, np.int64)
  max_index = length - 1
  bits = block_bits(max_index)
  jump = _cipher_table(bits, seed)
  # grain's cipher reads only the block's bits of its input (relevant for length = 2^bits + 1).
  starts = np.arange(length, dtype=np.int64) & ((1 << bits) - 1)
  # Pointer jumping: jump[x] = the first value ≤ max_index on x's walk, or a value further along
  # it with only out-of-range values skipped. Walks from out-of-range cycles never end; only the
  # starts' answers are waited for.
  while (jump[starts] > max_index).any():
    jump = np.where(jump > max_index, jump[jump], jump)
  return jump[starts]


class TabledShuffle(grain.MapDataset):
  """`parent.shuffle(seed)`'s order, re-shuffled each epoch, from `epoch_permutation`.

  Args:
    parent: the dataset to shuffle (finite, ≤ 2^MAX_TABLE_BITS elements).
    seed: as `grain.MapDataset.shuffle`'s; epoch `e` uses `(seed + e) mod 2^32`.
  """

  def __init__(self, parent: grain.MapDataset, seed: int):
    super().__init__(parent)
    if not 0 <= seed < 2**32:
      raise ValueError(f"Seed must be an integer between 0 and 2**32-1 (got {seed=}).")
    self._seed = int(seed)
    self._length = len(parent)
    self._epochs: dict[int, np.ndarray] = {}
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return self._length

  def __str__(self) -> str:
    return f"TabledShuffle(seed={self._seed})"

  def __getstate__(self):  # Picklable for grain's worker processes: no lock, no tables.
    state = dict(self.__dict__)
    state["_epochs"], state["_lock"] = {}, None
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def _permutation(self, epoch: int) -> np.ndarray:
    with self._lock:
      perm = self._epochs.get(epoch)
      if perm is None:
        perm = epoch_permutation(self._length, (self._seed + epoch) % 2**32)
        self._epochs[epoch] = perm
        for old in sorted(self._epochs)[:-_KEPT_EPOCHS]:
          del self._epochs[old]
      return perm

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    epoch, position = divmod(index, self._length)
    return self._parent[int(self._permutation(epoch)[position]) + epoch * self._length]


def shuffle(dataset: grain.MapDataset, seed: int) -> grain.MapDataset:
  """`dataset.shuffle(seed=seed)`'s order, one vectorized pass per epoch where that is cheaper.

  Args:
    dataset: a finite `MapDataset` (shuffle before `repeat`).
    seed: the shuffle seed, `0 ≤ seed < 2^32`.

  Returns:
    A `MapDataset` whose element `i` is `dataset.shuffle(seed=seed)[i]`.

  Example:
    >>> import grain
    >>> shuffle(grain.MapDataset.range(4), seed=1)[0] == grain.MapDataset.range(4).shuffle(
    ...   seed=1)[0]
    True
  """
  length = len(dataset)
  if length == 0 or (length > 1 and block_bits(length - 1) > MAX_TABLE_BITS):
    return dataset.shuffle(seed=seed)
  return TabledShuffle(dataset, seed)
