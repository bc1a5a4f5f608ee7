#!/usr/bin/env bash
# Set up (with dev tools), lint, and run the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh --dev
. .venv/bin/activate
ruff check .
python -m pytest -n 2 --dist loadgroup --durations=15 tests  # loadgroup: a shared run stays on one worker
