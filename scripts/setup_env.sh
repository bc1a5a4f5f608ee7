#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project into it from the repo's own files.
# A GPU user's own torch is never replaced: the pinned CPU torch (requirements-cpu.txt) is installed
# only when the venv has no torch and the machine has no NVIDIA GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing the CUDA torch that requirements.txt allows (install your own first to choose)."
  else
    python -m pip install -q -r requirements-cpu.txt
  fi
fi
python -m pip install -q -r requirements.txt
if [ "${1:-}" = "--dev" ]; then
  python -m pip install -q -r requirements-dev.txt
fi
python -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || python -m pip install -q --no-deps -e .
