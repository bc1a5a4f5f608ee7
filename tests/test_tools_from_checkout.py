"""Every tool runs from a checkout with the requirements installed, not only after scripts/setup_env.sh has
installed the project (issue 24 point 8): `python tools/<tool>.py --help` with the project's editable install
taken away. One subprocess for all tools (torch loads once); before each tool the project's modules and any
sys.path change are dropped, so each tool must find `library` by itself.

Break this catches (run once, it failed for the six tools that import the project): tools/_bootstrap.py not putting
the repository root on sys.path (ModuleNotFoundError: No module named 'library').
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = sorted(p for p in (ROOT / "tools").glob("*.py") if not p.name.startswith("_"))

RUNNER = r"""
import json, os, runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
base_path, base_modules, results = list(sys.path), set(sys.modules), {}
for tool in sys.argv[1:]:
    for name in set(sys.modules) - base_modules:
        if name.split(".")[0] in ("library", "networks") or (name.startswith("_") and "." not in name):
            del sys.modules[name]
    sys.path[:] = [os.path.dirname(tool)] + base_path[1:]  # as `python tools/<tool>.py` sets it
    sys.argv = [tool, "--help"]
    try:
        runpy.run_path(tool, run_name="__main__")
        results[tool] = "returned"
    except SystemExit as exc:
        results[tool] = "exit %s" % exc.code
    except Exception as exc:
        results[tool] = "%s: %s" % (type(exc).__name__, exc)
print("RESULTS " + json.dumps(results))
"""


def test_every_tool_answers_help_without_the_project_installed(tmp_path: Path) -> None:
    assert len(TOOLS) >= 8
    done = subprocess.run([sys.executable, "-c", RUNNER, *map(str, TOOLS)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULTS ")), None)
    assert line, done.stdout[-2000:] + done.stderr[-3000:]
    results = json.loads(line.removeprefix("RESULTS "))
    failed = {Path(tool).name: outcome for tool, outcome in results.items() if outcome not in ("exit 0", "exit None")}
    assert not failed, failed
