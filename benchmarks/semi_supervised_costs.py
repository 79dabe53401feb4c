r"""Step cost of every semi-supervised kind relative to Mean Teacher, and ACTION++ against PyTorch.

  python -m benchmarks.semi_supervised_costs --out=benchmarks/results/semi_supervised_costs.md
  python -m benchmarks.semi_supervised_costs --options=small --iters=5   # quicker

1. Every `semi.kind` of `configs/semi_supervised.py:<options>,kind=…`: the jitted train step
   (`harness.benchmark_config`: one real batch, compiled ahead of time, median of `--iters`
   steps), and its ratio to Mean Teacher's.
2. ACTION++'s whole train step against the independent PyTorch step
   (`torch_semi_supervised.benchmark_torch_semi_supervised`) at the same batch and shapes.
3. ACTION++'s two contrastive terms alone (sampling + loss, forward and backward to the
   embeddings): the library's jitted terms against the PyTorch ones
   (`torch_semi_supervised.benchmark_torch_contrast`).

Writes a Markdown table to `--out` and prints it. Timings are what this host measured; they
are never asserted by the tests.
"""

from __future__ import annotations

import os
import platform

import jax
from absl import app, flags

from benchmarks import harness, report, torch_semi_supervised
from configs import semi_supervised
from mlsup_jax.methods.semi_supervised import KINDS

_OUT = flags.DEFINE_string("out", "benchmarks/results/semi_supervised_costs.md", "Markdown file.")
_OPTIONS = flags.DEFINE_string("options", "", "Config options besides kind (e.g. `small`).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
_ITERS = flags.DEFINE_integer("iters", 10, "Timed steps.")
_TORCH = flags.DEFINE_bool("torch", True, "Also time the PyTorch ACTION++ step and contrasts.")


def _config(kind: str):
  options = ",".join(part for part in (_OPTIONS.value, f"kind={kind}") if part)
  return semi_supervised.get_config(options)


def main(argv):
  del argv
  load_start = os.getloadavg()
  timing = {"warmup": _WARMUP.value, "iters": _ITERS.value}
  rows = {}
  for kind in KINDS:
    print(f"[semi_supervised_costs] {kind}", flush=True)
    rows[kind] = harness.benchmark_config(_config(kind), **timing)
  reference = rows["mean_teacher"]["step_ms_median"]
  device = f"{jax.devices()[0].device_kind} ×1"
  size = _OPTIONS.value or "default"
  lines = [
    "# Semi-supervised step costs",
    "",
    f"`python -m benchmarks.semi_supervised_costs --options={_OPTIONS.value}` — config size "
    f"`{size}`, {device}, {platform.machine()}, load average {load_start[0]:.1f} at the start; "
    f"median of {_ITERS.value} steps after {_WARMUP.value} warm-up steps (jitted, one batch).",
    "",
    "| kind | labelled + unlabelled batch | step ms (median) | × Mean Teacher | compile s |",
    "|---|---|---|---|---|",
  ]
  for kind, row in rows.items():
    unlabelled = row["input_shapes"]["unlabelled/image"][0]
    lines.append(
      f"| {kind} | {row['batch_size']} + {unlabelled} | {row['step_ms_median']:.1f} | "
      f"{row['step_ms_median'] / reference:.2f} | {row['compile_s']:.1f} |"
    )
  if _TORCH.value:
    config = _config("action_pp")
    jit = rows["action_pp"]
    image_shape = jit["input_shapes"]["image"][1:]
    torch_row = torch_semi_supervised.benchmark_torch_semi_supervised(
      config, jit["batch_size"], _WARMUP.value, _ITERS.value, "cpu", image_shape
    )
    lines += [
      "",
      "ACTION++ against an independent PyTorch implementation (same batch and shapes):",
      "",
    ]
    if "skipped" in torch_row:
      lines.append(f"- PyTorch leg skipped: {torch_row['skipped']}.")
    else:
      contrast = torch_semi_supervised.benchmark_torch_contrast(
        config, "cpu", _WARMUP.value, _ITERS.value
      )
      lines += [
        "| what | JAX ms | PyTorch ms | PyTorch / JAX |",
        "|---|---|---|---|",
        f"| whole train step | {jit['step_ms_median']:.1f} | {torch_row['step_ms_median']:.1f} | "
        f"{torch_row['step_ms_median'] / jit['step_ms_median']:.2f} |",
        f"| contrastive terms (ReCo + TSC, sampling + loss + backward; "
        f"{contrast['shape']['pixels']} pixels, {contrast['shape']['anchors']} anchors, queue "
        f"{contrast['shape']['queue']}) | {contrast['jax_ms']:.1f} | {contrast['torch_ms']:.1f} | "
        f"{contrast['torch_ms'] / contrast['jax_ms']:.2f} |",
      ]
  env = report.environment()
  lines += [
    "",
    f"Versions: {', '.join(f'{k} {v}' for k, v in sorted(env.get('versions', {}).items()))}.",
  ]
  text = "\n".join(lines) + "\n"
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  app.run(main)
