#!/usr/bin/env bash
# The GPU questions of issue 19 in one command (about 5 minutes on one H100/H200-class GPU; nothing downloaded):
#   bash bench/gpu.sh            s/step, peak memory and MFU of the trainer and a bare loop, every memory option
#   bash bench/gpu.sh --dry      the same script on the CPU with the tiny model (under a minute)
# The table is appended to bench/RESULTS.md (--dry only prints it). See docs/memory_and_speed.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python
[ -x .venv/bin/python ] && PY=.venv/bin/python
exec "$PY" bench/gpu_bench.py "$@"
