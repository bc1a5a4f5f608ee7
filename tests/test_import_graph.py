"""Imports run one way (issue 24 point 9): no module of the project imports, directly or through others, a module
that imports it back, not even inside a function or under TYPE_CHECKING. A circle hides which file is the lower
layer and breaks as soon as one side imports at module level.

Break this catches (run once, it failed): library/anima/detect_adapters.py importing `Finding` from detect.py
again (the circle detect.py <-> detect_adapters.py this test was written for).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("library", "networks")
SCRIPT_FOLDERS = ("bench", "tools")  # run as scripts: their siblings import each other by bare module name


def module_files() -> dict[str, Path]:
    found = {".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
             for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    for folder in SCRIPT_FOLDERS:
        found |= {path.stem: path for path in (ROOT / folder).glob("*.py")}
    return found


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules `path` imports anywhere in its code (relative imports resolved against `name`)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".")[: None if path.name == "__init__.py" else -1]  # the file's package
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, base]) if base else ".".join(parent)
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            # `from package import submodule` depends on the submodule; names from the package itself on it
            targets = submodules + ([base] if len(submodules) < len(node.names) else [])
        else:
            continue
        out |= {target for target in targets if target in known and target != name}
    return out


def test_no_module_imports_itself_back() -> None:
    files = module_files()
    graph = {name: imported(path, name, set(files)) for name, path in files.items()}
    assert graph["library.anima.detect"], "the scan finds imports"
    circles = []

    def walk(node: str, trail: list[str], done: set[str]) -> None:
        for child in sorted(graph[node]):
            if child in trail:
                circles.append(" -> ".join([*trail[trail.index(child):], child]))
            elif child not in done:
                walk(child, [*trail, child], done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            walk(start, [start], done)
    assert not circles, "imports that come back:\n  " + "\n  ".join(sorted(set(circles)))
