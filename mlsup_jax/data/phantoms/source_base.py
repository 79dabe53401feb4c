"""Random-access base classes of every phantom and their seeding.

* `case_rng(seed, split, index)` gives each case its own independent generator, so a case never
  depends on which other cases were generated before it.
* `PhantomSource`: the random-access base class with a bounded, thread-safe per-index cache;
  `LabelledPhantomSource` adds a class per case drawn from its own stream (`class_stream`), so
  classes are known without rendering.
"""

from __future__ import annotations

import abc
import collections
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}


def split_id(split: str) -> int:
  """The integer id of a split name (train=0, val=1, test=2).

  Raises:
    ValueError: for an unknown split.
  """
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; expected one of {', '.join(SPLITS)}.")
  return SPLITS[split]


def case_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The generator of one case: `np.random.default_rng([seed, split_id, index])`.

  Different `(seed, split, index)` triples give statistically independent streams, so splits
  are disjoint and every case is reproducible on its own.
  """
  return np.random.default_rng([int(seed), split_id(split), int(index)])


class PhantomSource(abc.ABC):
  """A random-access source of deterministic synthetic cases.

  Subclasses implement `generate(rng, index)`; case `index` of a split is always generated from
  `case_rng(seed, split, index)`. Generated cases are kept in a bounded least-recently-used cache
  (thread-safe, not pickled), so repeated reads are free; every read returns fresh copies of the
  arrays, so callers may modify them.

  Args:
    split: "train", "val" or "test" (disjoint case streams).
    num_cases: number of cases, ≥ 1.
    seed: non-negative base seed.
    cache_size: maximum number of cached cases (0 disables caching).

  Raises:
    ValueError: on an unknown split, `num_cases` < 1, a negative seed or `cache_size` < 0.
  """

  def __init__(self, split: str, num_cases: int, seed: int, cache_size: int = 128):
    split_id(split)
    if int(num_cases) < 1:
      raise ValueError(f"num_cases must be ≥ 1, got {num_cases}.")
    if int(seed) < 0:
      raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    if int(cache_size) < 0:
      raise ValueError(f"cache_size must be ≥ 0, got {cache_size}.")
    self.split = split
    self.num_cases = int(num_cases)
    self.seed = int(seed)
    self.cache_size = int(cache_size)
    self._cache: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()
    self._lock = threading.Lock()

  @abc.abstractmethod
  def generate(self, rng: np.random.Generator, index: int) -> dict[str, Any]:
    """Generates case `index` from its own generator `rng`; returns a dict of numpy arrays."""

  def __len__(self) -> int:
    return self.num_cases

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {k: np.array(v, copy=True) for k, v in self.case(self._check_index(index)).items()}

  def _check_index(self, index: int, length: int | None = None) -> int:
    length = len(self) if length is None else length
    index = int(index)
    if not -length <= index < length:
      raise IndexError(f"Index {index} out of range for {type(self).__name__} of length {length}.")
    return index % length

  def case(self, index: int) -> dict[str, Any]:
    """The cached, read-only arrays of case `index` in `[0, num_cases)` (generated on a miss)."""
    index = self._check_index(index, self.num_cases)
    with self._lock:
      if index in self._cache:
        self._cache.move_to_end(index)
        return self._cache[index]
    result = self.generate(case_rng(self.seed, self.split, index), index)
    for value in result.values():
      if isinstance(value, np.ndarray):
        value.flags.writeable = False  # Shared by every later read through the cache.
    if self.cache_size:
      with self._lock:
        self._cache[index] = result
        self._cache.move_to_end(index)
        while len(self._cache) > self.cache_size:
          self._cache.popitem(last=False)
    return result

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_cache"] = collections.OrderedDict()
    state.pop("_lock")
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()


# Tag of the class stream: 4 seed words, so it never coincides with a `case_rng` stream.
_CLASS_STREAM = 0x434C4153


# Memory for cached cases of a `LabelledPhantomSource` (float32 image: 4 bytes a pixel).
LABELLED_CACHE_BYTES = 128 * 2**20


def class_stream(seed: int, split: str, num_cases: int, weights: Sequence[float]) -> np.ndarray:
  """The class of cases `0 … num_cases − 1`, drawn without rendering anything.

  Case i's class depends only on (seed, split, i) and `weights`: the uniforms come from one
  stream per (seed, split), read in order, so a longer source extends a shorter one.

  Returns:
    `[num_cases]` int32 class indices into `weights`.
  """
  uniforms = np.random.default_rng([int(seed), split_id(split), _CLASS_STREAM, 1]).random(
    int(num_cases)
  )
  cumulative = np.cumsum(np.asarray(weights, np.float64))
  cumulative /= cumulative[-1]
  classes = np.searchsorted(cumulative, uniforms, side="right")
  return np.minimum(classes, len(cumulative) - 1).astype(np.int32)


class LabelledPhantomSource(PhantomSource):
  """A phantom of square grey images, each case of one class of `CLASS_NAMES`.

  Subclasses set `CLASS_NAMES` and implement `render(rng, class_id) -> [S, S]`. Example:
  `image: [S, S, 1]` float32 and `class_id: []` int32, an index into `CLASS_NAMES`.

  Args:
    split: "train", "val" or "test"; each split draws disjoint cases.
    num_cases: number of cases in the split.
    seed: non-negative base seed.
    image_size: S, ≥ `MIN_IMAGE_SIZE`.
    class_weights: relative frequency of each class (normalised; zeros allowed, not all zero).
    cache_size: maximum number of cached cases; None: as many as fit in 128 MiB.

  Attributes:
    class_ids: `[num_cases]` int32, the class of every case (known without rendering).
    class_names: `CLASS_NAMES`.

  Raises:
    ValueError: on an unknown split or an invalid count, seed, size or weights.
  """

  CLASS_NAMES: tuple[str, ...] = ()
  MIN_IMAGE_SIZE = 32

  def __init__(
    self,
    split: str,
    num_cases: int,
    seed: int,
    image_size: int,
    class_weights: Sequence[float],
    cache_size: int | None = None,
  ):
    names = self.CLASS_NAMES
    if int(image_size) < self.MIN_IMAGE_SIZE:
      raise ValueError(f"image_size must be ≥ {self.MIN_IMAGE_SIZE}, got {image_size}.")
    weights = np.asarray(class_weights, np.float64)
    if weights.shape != (len(names),):
      raise ValueError(
        f"class_weights needs {len(names)} entries ({', '.join(names)}), got {list(class_weights)}."
      )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
      raise ValueError(
        f"class_weights must be finite, non-negative and not all zero, got {list(class_weights)}."
      )
    if cache_size is None:
      cache_size = max(1, min(int(num_cases), LABELLED_CACHE_BYTES // (4 * int(image_size) ** 2)))
    super().__init__(split, num_cases, seed, cache_size=cache_size)
    self.image_size = int(image_size)
    self.class_weights = tuple(float(w) for w in weights / weights.sum())
    self.class_names = names
    self.class_ids = class_stream(self.seed, split, self.num_cases, self.class_weights)
    self.class_ids.flags.writeable = False
    # Pixel centres in [-1, 1] (row, col), shared by every case.
    q = ((np.arange(self.image_size, dtype=np.float32) + 0.5) / self.image_size) * 2.0 - 1.0
    self._q_rows, self._q_cols = np.meshgrid(q, q, indexing="ij")

  def generate(self, rng: np.random.Generator, index: int) -> dict[str, np.ndarray]:
    """Case `index`: its image rendered for its class."""
    class_id = int(self.class_ids[index])
    image = self.render(rng, class_id)
    return {"image": image[..., None], "class_id": np.asarray(class_id, np.int32)}

  def check_class_id(self, class_id: int) -> int:
    """`class_id` as an int, or ValueError when it is not a class of `CLASS_NAMES`."""
    if not 0 <= int(class_id) < len(self.CLASS_NAMES):
      raise ValueError(f"class_id must be in [0, {len(self.CLASS_NAMES)}), got {class_id}.")
    return int(class_id)

  @abc.abstractmethod
  def render(self, rng: np.random.Generator, class_id: int) -> np.ndarray:
    """One `[S, S]` float32 image of class `class_id` from `rng`."""
