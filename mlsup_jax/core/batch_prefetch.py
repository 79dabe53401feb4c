"""Input prefetch: the next dispatches' batches read in a background thread.

The training loop knows, before a stage starts, how many batches each of its dispatches takes
(`dispatch_lengths`: one per step, or up to `steps_per_dispatch` stacked ones, never across a
checkpoint or the stage's end). A thread walks that plan ahead of the loop: it reads the batches
from the data iterator (the input pipeline's work: decoding, transforms, batching), stacks those
of a multi-step dispatch, and records the iterator's state right after them. The loop gets
`(batch, data_state)`: the state is the one the iterator had when that batch was the last one
read, so a checkpoint stores exactly the consumed position and a resumed run reads the same
batches as an uninterrupted one, however far ahead the thread has read.

The thread makes host arrays only; the loop issues the device transfers itself (asynchronous on
accelerators). On XLA's CPU backend, transfers issued from a second thread while a sharded step
runs can starve the step's all-reduce of device threads (seen: a rendezvous timeout and abort
on 8 CPU devices).

The thread reads only the planned batches, so when a stage ends the iterator stands exactly after
the stage's last batch. An error in the thread (a `DataError` in a transform, say) is raised in
the loop at the batch where it happened.

Example:
  >>> import numpy as np
  >>> batches = iter([{"x": np.full((2,), i)} for i in range(4)])
  >>> with BatchPrefetcher(batches, [1, 2], lambda bs: bs, lambda: None) as pf:
  ...   first, _ = next(pf)
  ...   stacked, _ = next(pf)
  >>> int(first["x"][0]), [int(b["x"][0]) for b in stacked]
  (0, [1, 2])
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator


def dispatch_lengths(step: int, end: int, checkpoint_every: int, per_dispatch: int) -> list[int]:
  """The number of steps of each dispatch from `step` to `end`: up to `per_dispatch`, never
  crossing a multiple of `checkpoint_every` (a checkpoint) or `end`.

  Example:
    >>> dispatch_lengths(0, 10, checkpoint_every=4, per_dispatch=3)
    [3, 1, 3, 1, 2]
  """
  if per_dispatch < 1:
    raise ValueError(f"config.train.steps_per_dispatch={per_dispatch} must be ≥ 1.")
  lengths = []
  while step < end:
    boundary = min(end, (step // checkpoint_every + 1) * checkpoint_every)
    length = min(per_dispatch, boundary - step)
    lengths.append(length)
    step += length
  return lengths


class _Failed:
  """An exception raised in the thread, to re-raise in the loop."""

  def __init__(self, error: BaseException):
    self.error = error


class BatchPrefetcher:
  """Iterates `(batch, data_state)` for each planned dispatch, `depth` dispatches ahead.

  Args:
    data_iter: the training iterator (local batches; `get_state` via `get_state`).
    lengths: batches per dispatch (`dispatch_lengths`).
    make_stacked: list of local batches → a stacked batch `[k, B, …]` (k > 1 steps; host work
      only). A one-step dispatch gets the local batch as the iterator made it.
    get_state: the iterator's state now (e.g. `data_iter.get_state`).
    depth: dispatches read ahead (0: no thread, each dispatch read when asked).

  Use it as a context manager (or call `close`) so the thread stops when the loop does.
  """

  def __init__(
    self,
    data_iter: Iterator,
    lengths: Iterable[int],
    make_stacked: Callable,
    get_state: Callable,
    depth: int = 2,
  ):
    if depth < 0:
      raise ValueError(f"config.train.prefetch={depth} must be ≥ 0.")
    self._data_iter = data_iter
    self._lengths = list(lengths)
    self._make_stacked = make_stacked
    self._get_state = get_state
    self._served = 0
    self._thread = None
    if depth > 0 and self._lengths:
      self._queue = queue.Queue(maxsize=depth)
      self._stop = threading.Event()
      self._thread = threading.Thread(target=self._fill, name="batch-prefetch", daemon=True)
      self._thread.start()

  def _read(self, length: int):
    if length == 1:
      batch = next(self._data_iter)
    else:
      batch = self._make_stacked([next(self._data_iter) for _ in range(length)])
    return batch, self._get_state()

  def _fill(self) -> None:
    for length in self._lengths:
      try:
        item = self._read(length)
      except BaseException as error:  # Raised again in the loop, at this batch.
        item = _Failed(error)
      while not self._stop.is_set():
        try:
          self._queue.put(item, timeout=0.1)
          break
        except queue.Full:
          continue
      if self._stop.is_set() or isinstance(item, _Failed):
        return

  def __iter__(self):
    return self

  def __next__(self):
    if self._served >= len(self._lengths):
      raise StopIteration
    length = self._lengths[self._served]
    self._served += 1
    if self._thread is None:
      return self._read(length)
    item = self._queue.get()
    if isinstance(item, _Failed):
      raise item.error
    return item

  def close(self) -> None:
    """Stops the thread (it may be blocked on a full queue) and waits for it."""
    if self._thread is not None:
      self._stop.set()
      self._thread.join()
      self._thread = None

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()
