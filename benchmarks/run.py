r"""Benchmarks one config's train step and records the results.

  python -m benchmarks.run --config=configs/scunet.py:smoke --out=benchmarks/results
  python -m benchmarks.run --config=configs/scunet.py --iters=5 --nopmap \
      --config.data.batch_size=64
  python -m benchmarks.run --config=configs/tend.py --stage=margin
  python -m benchmarks.run --config=configs/maxquery.py:full --batch_sizes=8,16,32 --nopmap

`--stage` picks the stage whose step is timed (default: the method's first), e.g. TEND's
`autoencoder` / `margin`, CVAD's `cvae` / `discriminator`; its state is the one the stage starts
from (`harness.stage_state`). The results key is the config name, then `stage=<name>` when given.

Writes `<out>/<device_kind>_x<count>.json` (see `benchmarks/report.py`), regenerates
`<out>/RESULTS.md` and prints its table. Legs: `jit` (always), `pmap` (`--pmap`), `torch`
(`--torch`: the independent PyTorch SCU-Net, MaxQuery/kMaX, U-Net, the TEND / CVAD stages, the
MCPM / MW-Net meta step, the ACTION++ step, U-Net + MORSE, the LTUDA step and the PMS step of
`benchmarks/torch_*.py`;
skipped for other models and when PyTorch is not installed: `pip install -e .[bench]`).
The persistent compilation cache stays off so `compile s` is a real compilation.

`--batch_sizes=8,16,32` sweeps the global batch (`harness.with_batch_size`: extra streams keep
their ratio to it); each batch is its own results entry, `<config> batch=<B>`. FLOPs per step
(hence MFU) come from the step's CPU lowering on accelerators (`harness` docstring): the
`flops_source` field of each leg says which count was used.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from benchmarks import harness, report
from benchmarks.torch_legs import TORCH_BENCHMARKS, torch_leg  # noqa: F401 (re-exported)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Method config file.", lock_config=True)
_OUT = flags.DEFINE_string("out", "benchmarks/results", "Folder for the JSON and RESULTS.md.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
_ITERS = flags.DEFINE_integer("iters", 10, "Timed steps.")
_PMAP = flags.DEFINE_bool("pmap", True, "Also time the jax.pmap comparison leg.")
_TORCH = flags.DEFINE_bool(
  "torch", True, "Also time the PyTorch leg (SCU-Net, MaxQuery/kMaX, U-Net, TEND, CVAD, MCPM)."
)
_STAGE = flags.DEFINE_string(
  "stage", None, "Name of the stage whose train step is timed; default: the method's first."
)
_BATCH_SIZES = flags.DEFINE_list(
  "batch_sizes", [], "Global batch sizes to sweep (default: the config's batch size alone)."
)
_NOTE = flags.DEFINE_string("note", "", "Free text stored with the results (e.g. host load).")
flags.mark_flags_as_required(["config"])


def config_name() -> str:
  """`scunet.py:smoke` plus any `--config.x=y` overrides, as the key of the results."""
  flag = flags.FLAGS["config"]
  name = os.path.basename(config_flags.get_config_filename(flag))
  overrides = config_flags.get_override_values(flag)
  stage = "" if _STAGE.value is None else f" stage={_STAGE.value}"
  return name + stage + "".join(f" {k}={v}" for k, v in sorted(overrides.items()))


def main(argv):
  del argv
  timing = {"warmup": _WARMUP.value, "iters": _ITERS.value, "stage": _STAGE.value}
  sweep = [int(b) for b in _BATCH_SIZES.value]
  for batch in sweep or [None]:
    config = _CONFIG.value if batch is None else harness.with_batch_size(_CONFIG.value, batch)
    load_start = os.getloadavg()
    legs = {"jit": harness.benchmark_config(config, **timing)}
    if _PMAP.value:
      legs["pmap"] = harness.benchmark_pmap_leg(config, **timing)
    if _TORCH.value:
      legs["torch"] = torch_leg(config, legs["jit"], _WARMUP.value, _ITERS.value)
    name = config_name() + ("" if batch is None else f" batch={batch}")
    path = report.write_results(
      _OUT.value, name, legs, report.environment(), _NOTE.value, load_start
    )
    print(f"Wrote {path}")
  print(report.write_markdown(_OUT.value))


if __name__ == "__main__":
  app.run(main)
