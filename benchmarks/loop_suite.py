r"""The training loop against the bare step for every method config: one markdown table.

  python -m benchmarks.loop_suite --size=smoke --out=docs/results/loop.md
  python -m benchmarks.loop_suite --size=smoke --cadence=production --steps=200 \
      --out=docs/results/loop.md
  python -m benchmarks.loop_suite --size=default --methods=maxquery,scunet --steps=40

Each entry of `device_suite.SUITE` (plus the image classifier and the reconstruction detector)
runs `python -m benchmarks.loop` in its own process (fresh caches, one entry's failure does not
stop the rest) and appends its row to `--out` (`loop.HEADER`: loop and bare-step ms per step,
examples/s, their ratio and the loop's host time by phase).

`--cadence=configured` keeps the config's logging and checkpoint cadence (smoke configs log
every 2–4 steps and checkpoint every 3–8: a test cadence); `--cadence=production` logs every 25
steps and checkpoints every 100 (the default configs' cadence is 25–50 / 100–500), so small
steps stand in for an accelerator's launch-bound ones. `--split_cores=0:1` runs each entry with
XLA's runtime on core 1 and the host's work on core 0 (`benchmarks/core_split.py`): the CPU
stand-in for an accelerator host, where the input pipeline does not take the device's core.
"""

from __future__ import annotations

import os
import subprocess
import sys

from absl import app, flags

from benchmarks import loop
from benchmarks.device_suite import SUITE, Entry

# Not the embedding retrieval: its sources are files the OSCARS pipeline writes.
ENTRIES = tuple(e for e in SUITE if e.name != "embedding_retrieval") + (
  Entry("image_classifier", "image_classifier"),
  Entry("reconstruction_detector", "reconstruction_detector"),
)
PRODUCTION_CADENCE = (("train.log_every", 25), ("train.checkpoint_every", 100))


def command(
  entry: Entry, size: str, cadence: str, steps: int, iters: int, out: str, split_cores: str = ""
) -> list:
  """The `benchmarks.loop` command line of one entry."""
  arg = entry.arg(size)
  cmd = [sys.executable, "-m", "benchmarks.loop", f"--config=configs/{entry.module}.py:{arg}"]
  overrides = list(entry.overrides)
  if cadence == "production":
    overrides += list(PRODUCTION_CADENCE)
  cmd += [f"--config.{key}={value}" for key, value in overrides]
  if entry.stage:
    cmd.append(f"--stage={entry.stage}")
  if split_cores:
    cmd.append(f"--split_cores={split_cores}")
  return cmd + [f"--steps={steps}", f"--iters={iters}", f"--out={out}"]


def main(argv):
  del argv
  f = flags.FLAGS
  names = set(f.methods) if f.methods else None
  entries = [e for e in ENTRIES if names is None or e.name in names]
  if names and len(entries) != len(names):
    raise ValueError(f"Unknown --methods {sorted(names - {e.name for e in entries})}.")
  os.makedirs(os.path.dirname(os.path.abspath(f.out)), exist_ok=True)
  with open(f.out, "a") as out:
    split = f" --split_cores={f.split_cores}" if f.split_cores else ""
    out.write(
      f"\n`--size={f.size} --cadence={f.cadence} --steps={f.steps}{split}`\n\n{loop.HEADER}"
    )
  for entry in entries:
    cmd = command(entry, f.size, f.cadence, f.steps, f.iters, f.out + ".rows", f.split_cores)
    print(" ".join(cmd), flush=True)
    try:
      done = subprocess.run(cmd, timeout=f.timeout_s, capture_output=True, text=True)
      failed = done.returncode != 0 and (done.stderr.strip().splitlines() or ["?"])[-1]
    except subprocess.TimeoutExpired:
      failed = f"ran past {f.timeout_s} s"
    rows = f.out + ".rows"
    if failed or not os.path.exists(rows):
      line = f"| `{entry.name}` | failed: {str(failed)[:160]} |\n"
    else:
      with open(rows) as r:
        line = r.read().splitlines()[-1] + "\n"
      os.remove(rows)
    with open(f.out, "a") as out:
      out.write(line)
    print(line, end="", flush=True)


if __name__ == "__main__":
  flags.DEFINE_enum("size", "smoke", ["smoke", "default", "full"], "Config size option.")
  flags.DEFINE_enum("cadence", "configured", ["configured", "production"], "See docstring.")
  flags.DEFINE_integer("steps", 60, "Training steps of each loop run.")
  flags.DEFINE_integer("iters", 10, "Timed steps of each bare-step measurement.")
  flags.DEFINE_list("methods", [], "Entry names (default: all).")
  flags.DEFINE_string("out", "docs/results/loop.md", "Markdown file to append to.")
  flags.DEFINE_integer("timeout_s", 900, "Limit per entry.")
  flags.DEFINE_string("split_cores", "", "Passed to benchmarks.loop (HOST:DEVICE cores).")
  app.run(main)
