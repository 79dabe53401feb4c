#!/usr/bin/env bash
# The accelerator benchmark suite (issue 28 point 4) in one command, capped at 8 minutes:
#   bash benchmarks/device_suite.sh [OUT_DIR] [extra flags for benchmarks.device_suite]
# Runs `python -m benchmarks.device_suite --size=full` (see its docstring): bare step fp32 /
# bf16 of every method config, the mask transformer's batch sweep, its end-to-end loop, the
# PyTorch eager and torch.compile legs. Legs stop starting after 420 s; `timeout` ends the run
# at 480 s, and the JSON written after every leg keeps what was measured.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/results/device_suite}"
shift || true
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
timeout --signal=TERM --kill-after=15 480 \
  "$PYTHON" -m benchmarks.device_suite --size=full --out="$OUT" "$@"
