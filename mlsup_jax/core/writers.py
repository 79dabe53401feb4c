"""Metric writers: JSONL, TensorBoard event files and a console progress bar.

Only process 0 writes. Values arrive already on the host (the trainer fetches them at log
intervals), so writers never touch the device.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping

import jax
import numpy as np


def _to_float(value) -> float:
  return float(np.asarray(value))


class JsonlWriter:
  """Appends one JSON object per logged step to `<workdir>/metrics.jsonl`."""

  def __init__(self, workdir: str):
    self._path = os.path.join(workdir, "metrics.jsonl")

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    record = {"step": int(step), **{k: _to_float(v) for k, v in metrics.items()}}
    with open(self._path, "a") as f:
      f.write(json.dumps(record) + "\n")


class TensorBoardWriter:
  """TensorBoard event files under `<workdir>/tensorboard` (tensorboardX: no TensorFlow)."""

  def __init__(self, workdir: str):
    from tensorboardX import SummaryWriter  # Imported here: only the trainer needs it.

    self._writer = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    for name, value in metrics.items():
      self._writer.add_scalar(name, _to_float(value), int(step))
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class ProgressBar:
  """One console line per update: stage, step/total, step rate, ETA and chosen metrics."""

  # Seconds since the first update before a rate is shown: updates are written in bursts (the
  # metrics of step n are read after the next dispatch; all pending ones at a checkpoint), so
  # two updates a few microseconds apart would show a rate of thousands of steps/s.
  MIN_RATE_SECONDS = 1.0

  def __init__(self, total_steps: int, stream=None, width: int = 24):
    self._total = max(int(total_steps), 1)
    self._stream = sys.stderr if stream is None else stream
    self._width = width
    self._first = None  # (time, step) of the first update: the rate excludes compilation.

  def update(self, step: int, metrics: Mapping[str, float], stage: str = "") -> None:
    now = time.perf_counter()
    rate = None
    if self._first is None:
      self._first = (now, step)
    elif step > self._first[1] and now - self._first[0] >= self.MIN_RATE_SECONDS:
      rate = (step - self._first[1]) / (now - self._first[0])
    done = min(step / self._total, 1.0)
    filled = int(round(done * self._width))
    bar = "█" * filled + "·" * (self._width - filled)
    eta = "?" if not rate else _format_seconds((self._total - step) / rate)
    rate_text = "?" if not rate else f"{rate:.2f}"
    shown = " ".join(f"{k}={_to_float(v):.4g}" for k, v in list(metrics.items())[:4])
    self._stream.write(
      f"[{stage}] {bar} {step}/{self._total} {rate_text} step/s ETA {eta} {shown}\n"
    )
    self._stream.flush()


def _format_seconds(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class MetricWriters:
  """Fans a metrics dict out to JSONL, TensorBoard and the progress bar (process 0 only)."""

  def __init__(self, workdir: str, total_steps: int, tensorboard: bool = True):
    self._active = jax.process_index() == 0
    self._writers = []
    self.progress = ProgressBar(total_steps)
    if self._active:
      os.makedirs(workdir, exist_ok=True)
      self._writers.append(JsonlWriter(workdir))
      if tensorboard:
        self._writers.append(TensorBoardWriter(workdir))

  def write(self, step: int, metrics: Mapping[str, float], stage: str = "", progress=True):
    if not self._active:
      return
    for writer in self._writers:
      writer.write(step, metrics)
    if progress:
      self.progress.update(step, metrics, stage)

  def close(self) -> None:
    for writer in self._writers:
      if hasattr(writer, "close"):
        writer.close()
