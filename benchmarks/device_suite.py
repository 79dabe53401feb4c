r"""The accelerator benchmark suite in one command (issue 28 point 4): JSON + markdown.

  python -m benchmarks.device_suite --size=full --out=benchmarks/results/device_suite
  bash benchmarks/device_suite.sh                      # the same, capped at 8 minutes
  python -m benchmarks.device_suite --size=smoke --methods=tend --legs=jit,bf16 --iters=2

Legs, run in this order until `--budget_s` is spent (the rest are recorded as skipped):
1. `jit` / `bf16` of the mask transformer (MaxQuery, `configs/maxquery.py`): the production
   step (`harness.benchmark_config`) in float32 and with `model.dtype=bfloat16`, then `sweep`:
   the same step at every `--batch_sizes` (`harness.with_batch_size`; the config's own batch is
   the `jit` leg, not run twice);
2. `torch` (eager) and `torch_compile` (`torch_report.compiled`: the whole PyTorch step under
   `torch.compile`) of the mask transformer;
3. `loop`: the end-to-end training loop against the bare step (`benchmarks.loop.measure`) for
   `--loop_methods`;
4. `jit` / `bf16` of every other `--methods` entry, then 5. their `torch` / `torch_compile` legs
   where `benchmarks/torch_*.py` has that network (`torch_legs.TORCH_BENCHMARKS`).

A leg that fails, runs past `--leg_timeout_s` or finds no PyTorch is recorded with its reason
and the suite goes on. FLOPs per step are those of the step's CPU lowering on accelerators
(`harness` docstring; each leg's `flops_source` says which), so MFU is meaningful on GPUs.
`<out>/device_suite_<device>_<size>.json` is rewritten after every leg (a run cut short keeps
what it measured) and `.md` beside it at the end.

Sizes: `--size` is appended to every config's options (`full`: the papers' scale, for
accelerators; `smoke`: seconds on a CPU, for tests). Not yet run on a GPU: see
benchmarks/results/device_suite.md.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import gc
import importlib
import importlib.util
import json
import os
import re
import signal
import time
import traceback

import jax
from absl import app, flags

from benchmarks import harness, loop, report, torch_legs, torch_report


@dataclasses.dataclass(frozen=True)
class Entry:
  """One method config of the suite.

  Attributes:
    name: the key in the results and in `--methods`.
    module: `configs.<module>`.
    options: options before the size, e.g. `kind=action_pp` (comma-joined with `--size`).
    stage: the stage whose step is timed (None: the first).
    overrides: `config.<dotted path>` → value set after loading (settings that cost time
      before the first step but not in it).
  """

  name: str
  module: str
  options: str = ""
  stage: str | None = None
  overrides: tuple[tuple[str, object], ...] = ()

  def arg(self, size: str) -> str:
    return ",".join(filter(None, [self.options, "" if size == "default" else size]))


# The mask transformer first: its sweep is the suite's main question.
SUITE = (
  Entry("maxquery", "maxquery"),
  Entry("scunet", "scunet"),
  Entry("segmentation", "segmentation"),
  Entry("mcpm", "mcpm"),
  Entry("pint", "pint"),
  Entry("semi_supervised", "semi_supervised", options="kind=action_pp"),
  Entry("morse", "morse"),
  # Reading every label map before training is a start-up check, not part of the step.
  Entry("ltuda", "ltuda", stage="cda", overrides=(("ltuda.check_labels", False),)),
  Entry("tend", "tend", stage="autoencoder"),
  Entry("cvad", "cvad", stage="cvae"),
  Entry("pms", "pms"),
  Entry("embedding_retrieval", "embedding_retrieval"),
  # The thesis's best backbone; the torch legs are torchvision's Mask R-CNN.
  Entry("mask_rcnn", "mask_rcnn", options="depth=50"),
)
SWEEP_ENTRY = "maxquery"
LEGS = ("jit", "bf16", "sweep", "torch", "torch_compile", "loop")


class LegTimeout(Exception):
  """A leg ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
  """Raises `LegTimeout` in the main thread after `seconds` (SIGALRM; no limit elsewhere).

  A running XLA compilation is not interrupted: the exception comes when it returns.
  """
  usable = seconds > 0 and hasattr(signal, "SIGALRM")
  if usable:
    try:
      previous = signal.signal(signal.SIGALRM, _raise_timeout)
    except ValueError:  # Not the main thread.
      usable = False
  if usable:
    signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    if usable:
      signal.setitimer(signal.ITIMER_REAL, 0)
      signal.signal(signal.SIGALRM, previous)


def _raise_timeout(signum, frame):
  del signum, frame
  raise LegTimeout()


def torch_installed() -> bool:
  """Whether PyTorch can be imported (not a CI dependency: `pip install -e .[bench]`)."""
  return importlib.util.find_spec("torch") is not None


def load_config(entry: Entry, size: str, dtype: str | None = None, batch: int | None = None):
  """The entry's config at `size`, with its overrides, `model.dtype` and global batch."""
  config = importlib.import_module(f"configs.{entry.module}").get_config(entry.arg(size) or None)
  config = copy.deepcopy(config)
  with config.unlocked():
    for path, value in entry.overrides:
      *parents, leaf = path.split(".")
      section = config
      for key in parents:
        section = section[key]
      section[leaf] = value
    if dtype is not None:
      if "dtype" not in config.model:
        raise ValueError(f"config.model of {entry.name!r} has no dtype")
      config.model.dtype = dtype
  return config if batch is None else harness.with_batch_size(config, batch)


@dataclasses.dataclass
class Suite:
  """Runs the legs and records each (`records`), rewriting the JSON after every leg."""

  size: str
  out: str
  warmup: int = 3
  iters: int = 10
  loop_steps: int = 20
  budget_s: float = 450.0
  leg_timeout_s: float = 150.0
  devices: list | None = None
  records: list = dataclasses.field(default_factory=list)
  start: float = dataclasses.field(default_factory=time.perf_counter)

  def run_leg(self, entry: Entry, leg: str, fn, **details) -> dict | None:
    """Runs `fn()` (→ report) as one leg; records ok / skipped / failed / timeout."""
    record = {"config": entry.name, "arg": entry.arg(self.size), "leg": leg, **details}
    elapsed = time.perf_counter() - self.start
    report_ = None
    if elapsed > self.budget_s:
      record.update(status="skipped", reason=f"suite budget of {self.budget_s:.0f} s spent")
    else:
      limit = min(self.leg_timeout_s, self.budget_s - elapsed + 30.0)
      leg_start = time.perf_counter()
      try:
        with time_limit(limit):
          report_ = fn()
      except LegTimeout:
        record.update(status="timeout", reason=f"ran past {limit:.0f} s")
      except Exception as error:  # Recorded; the suite goes on (OOM, a missing kernel …).
        reason = f"{type(error).__name__}: {error}".strip()[:500]
        record.update(status="failed", reason=reason, traceback=traceback.format_exc()[-2000:])
      record["seconds"] = time.perf_counter() - leg_start
      if report_ is not None and "skipped" in report_:
        record.update(status="skipped", reason=report_["skipped"])
        report_ = None
      elif report_ is not None:
        record.update(status="ok", report=report_)
    self.records.append(record)
    self.write_json()
    gc.collect()
    status = record["status"] + (f" ({record.get('reason')})" if "reason" in record else "")
    print(f"[{time.perf_counter() - self.start:6.1f} s] {entry.name} {leg}: {status}", flush=True)
    return report_

  def path(self, ext: str) -> str:
    kind = re.sub(r"[^A-Za-z0-9.-]+", "_", self.environment()["device_kind"]).strip("_")
    return os.path.join(self.out, f"device_suite_{kind}_{self.size}.{ext}")

  def environment(self) -> dict:
    return report.environment(self.devices)

  def document(self) -> dict:
    return {
      **self.environment(),
      "size": self.size,
      "settings": {
        "warmup": self.warmup,
        "iters": self.iters,
        "loop_steps": self.loop_steps,
        "budget_s": self.budget_s,
        "leg_timeout_s": self.leg_timeout_s,
      },
      "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
      "wall_s": time.perf_counter() - self.start,
      "legs": self.records,
    }

  def write_json(self) -> str:
    os.makedirs(self.out, exist_ok=True)
    path = self.path("json")
    with open(path, "w") as f:
      json.dump(self.document(), f, indent=2, sort_keys=True, default=str)
    return path

  # The legs.
  def bare(self, entry: Entry, dtype=None, batch=None) -> dict:
    if dtype is not None and "dtype" not in load_config(entry, self.size).model:
      return {"skipped": "the model has no dtype setting"}
    config = load_config(entry, self.size, dtype, batch)
    return harness.benchmark_config(
      config, warmup=self.warmup, iters=self.iters, devices=self.devices, stage=entry.stage
    )

  def torch_leg(self, entry: Entry, jit_report: dict | None, compiled: bool) -> dict:
    if jit_report is None:
      return {"skipped": "no jit leg to take the batch shape from"}
    if not torch_installed():
      return {"skipped": "torch not installed"}
    config = load_config(entry, self.size)
    context = torch_report.compiled() if compiled else contextlib.nullcontext()
    with context:
      # torch.compile's first two calls compile (and may recompile): keep them out of the timing.
      warmup = max(self.warmup, 2) if compiled else self.warmup
      return torch_legs.torch_leg(config, jit_report, warmup, self.iters)

  def loop_leg(self, entry: Entry) -> dict:
    if entry.stage is not None:
      return {"skipped": f"the loop runs the whole method, not stage {entry.stage!r} alone"}
    config = load_config(entry, self.size)
    return loop.measure(config, self.loop_steps, self.iters, self.devices)


def run_suite(
  suite: Suite,
  entries,
  legs=LEGS,
  batch_sizes=(),
  loop_entries=(),
  sweep_entry: str = SWEEP_ENTRY,
) -> dict:
  """Runs the suite's legs over `entries` in the order of the module docstring.

  Args:
    suite: where the records go, the size and the timing settings.
    entries: `Entry`s (the suite's: `SUITE`).
    legs: the leg names to run (a subset of `LEGS`).
    batch_sizes: global batch sizes of the mask transformer's sweep.
    loop_entries: names of the entries whose end-to-end loop is measured.
    sweep_entry: the entry that goes first and whose batch is swept (the mask transformer).

  Returns:
    The document written to `<out>/device_suite_<device>_<size>.json`.

  Example:
    >>> from benchmarks import device_suite as ds
    >>> suite = ds.Suite(size="smoke", out="/tmp/suite", iters=2)
    >>> ds.run_suite(suite, [ds.SUITE[0]], legs=("jit",))  # doctest: +SKIP
  """
  unknown = set(legs) - set(LEGS)
  if unknown:
    raise ValueError(f"Unknown legs {sorted(unknown)}; expected some of {LEGS}.")
  entries = list(entries)
  first = [e for e in entries if e.name == sweep_entry]
  rest = [e for e in entries if e.name != sweep_entry]
  jit_reports = {}

  def bare_legs(entry):
    if "jit" in legs or "sweep" in legs or "torch" in legs or "torch_compile" in legs:
      jit_reports[entry.name] = suite.run_leg(entry, "jit", lambda: suite.bare(entry))
    if "bf16" in legs:
      suite.run_leg(entry, "bf16", lambda: suite.bare(entry, dtype="bfloat16"))

  def pytorch_legs(entry):
    for leg, compiled in (("torch", False), ("torch_compile", True)):
      if leg in legs:
        jit = jit_reports.get(entry.name)
        suite.run_leg(entry, leg, lambda j=jit, c=compiled: suite.torch_leg(entry, j, c))

  for entry in first:
    bare_legs(entry)
    if "sweep" in legs:
      own = (jit_reports.get(entry.name) or {}).get("batch_size")
      for batch in batch_sizes:
        if batch == own:
          continue  # The jit leg is this point of the sweep.
        suite.run_leg(entry, "sweep", lambda b=batch, e=entry: suite.bare(e, batch=b), batch=batch)
    pytorch_legs(entry)
  if "loop" in legs:
    for entry in entries:
      if entry.name in loop_entries:
        suite.run_leg(entry, "loop", lambda e=entry: suite.loop_leg(e))
  for entry in rest:
    bare_legs(entry)
  for entry in rest:
    pytorch_legs(entry)
  suite.write_json()
  markdown = write_markdown(suite.document(), suite.path("md"))
  print(markdown)
  return suite.document()


def _fmt(value, spec: str, scale: float = 1.0) -> str:
  return "—" if value is None else format(value * scale, spec)


MD_COLUMNS = (
  "config",
  "leg",
  "batch",
  "dtype",
  "compile s",
  "step ms median",
  "examples/s",
  "GFLOPs/step (source)",
  "TFLOP/s",
  "MFU",
  "peak MiB",
  "status",
)


def _md_row(record: dict) -> list[str]:
  leg = record["leg"]
  status = record["status"] + (f": {record['reason']}" if record.get("reason") else "")
  status = status.replace("|", "/").replace("\n", " ")
  rep = record.get("report")
  if rep is None:
    return [record["config"], leg, str(record.get("batch", "—"))] + ["—"] * 8 + [status]
  if leg == "loop":
    # loop.measure: the loop's and the bare step's ms per step, and their ratio.
    return [
      record["config"],
      "loop (bare step / loop: {:.2f})".format(rep["ratio"]),
      "—",
      "—",
      "—",
      f"{rep['loop_ms_per_step']:.2f} (bare {rep['step_ms']:.2f})",
      f"{rep['loop_examples_per_s']:.1f}",
      "—",
      "—",
      "—",
      "—",
      status,
    ]
  flops = rep.get("flops_per_step")
  source = rep.get("flops_source")
  mfu = rep.get("mfu")
  return [
    record["config"],
    leg,
    str(rep.get("batch_size")),
    str(rep.get("dtype")),
    _fmt(rep.get("compile_s"), ".1f"),
    f"{rep['step_ms_median']:.2f}",
    _fmt(rep.get("examples_per_s"), ".1f"),
    "—" if flops is None else f"{flops * 1e-9:.2f} ({source})",
    _fmt(rep.get("tflops_per_s"), ".3f"),
    "—" if mfu is None else f"{100 * mfu:.1f}%",
    _fmt((rep.get("memory") or {}).get("peak_bytes"), ".1f", 2.0**-20),
    status,
  ]


def write_markdown(document: dict, path: str) -> str:
  """The suite's table (one row per leg) with its environment; written to `path`."""
  versions = ", ".join(f"{k} {v}" for k, v in sorted(document["versions"].items()))
  lines = [
    f"# Device suite: {document['device_kind']} ×{document['device_count']}, "
    f"size `{document['size']}`",
    "",
    "Generated by `python -m benchmarks.device_suite` (see its docstring); do not edit.",
    f"{document['timestamp']}, {document['wall_s']:.0f} s wall, {document.get('host_cpus')} "
    f"host CPUs; {versions}. Settings: {document['settings']}.",
    "GFLOPs: `cpu_lowering` = the step lowered for one CPU device (counts cuDNN convolutions),",
    "`xla_cpu_compiled` = the compiled CPU program. torch legs: no FLOP count; their compile s is",
    "the first call (torch.compile) or none (eager). loop: ms per step of the training loop",
    "(bare step in brackets).",
    "",
    "| " + " | ".join(MD_COLUMNS) + " |",
    "|" + "---|" * len(MD_COLUMNS),
  ]
  lines += ["| " + " | ".join(_md_row(r)) + " |" for r in document["legs"]]
  text = "\n".join(lines) + "\n"
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    f.write(text)
  return text


# Default sweep per size: the full config's batch is 32.
SWEEP = {"full": "8,16,32,64", "default": "4,8,16", "smoke": "4,8"}


def define_flags() -> None:
  """The command-line flags (defined on demand: tests import this module next to others)."""
  flags.DEFINE_string("size", "full", "Config size appended to every config: full|default|smoke.")
  flags.DEFINE_list("methods", [e.name for e in SUITE], "Entries of SUITE to run (by name).")
  flags.DEFINE_list("legs", list(LEGS), f"Legs to run, some of {LEGS}.")
  flags.DEFINE_list("batch_sizes", None, "Mask-transformer sweep (default: SWEEP[size]).")
  flags.DEFINE_list("loop_methods", ["maxquery"], "Entries whose training loop is timed.")
  flags.DEFINE_string("out", "benchmarks/results/device_suite", "Folder for JSON + markdown.")
  flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
  flags.DEFINE_integer("iters", 10, "Timed steps.")
  flags.DEFINE_integer("loop_steps", 20, "Steps of the shorter loop run (the longer: twice).")
  flags.DEFINE_float("budget_s", 420.0, "No leg starts after this many seconds.")
  flags.DEFINE_float("leg_timeout_s", 150.0, "Time limit of one leg.")


def main(argv):
  del argv
  f = flags.FLAGS
  by_name = {e.name: e for e in SUITE}
  unknown = [n for n in f.methods if n not in by_name]
  if unknown:
    raise ValueError(f"Unknown configs {unknown}; expected some of {sorted(by_name)}.")
  sweep = f.batch_sizes if f.batch_sizes is not None else SWEEP.get(f.size, "").split(",")
  suite = Suite(
    size=f.size,
    out=f.out,
    warmup=f.warmup,
    iters=f.iters,
    loop_steps=f.loop_steps,
    budget_s=f.budget_s,
    leg_timeout_s=f.leg_timeout_s,
  )
  print(f"Device suite on {jax.devices()[0].device_kind} ×{jax.device_count()}, size {f.size}")
  run_suite(
    suite,
    [by_name[n] for n in f.methods],
    legs=tuple(f.legs),
    batch_sizes=[int(b) for b in sweep if b],
    loop_entries=tuple(f.loop_methods),
  )
  print(f"Wrote {suite.path('json')} and {suite.path('md')}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
