"""Makes `library` and `networks` importable when a tool runs from a checkout (`python tools/x.py`), installed by
scripts/setup_env.sh or not: the repository root goes on sys.path. Each tool imports this first."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
