"""The direction of the arrows in docs/architecture.md, enforced."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_generic_library_never_imports_anima() -> None:
    offenders = []
    for path in python_files(ROOT / "library"):
        if (ROOT / "library" / "anima") in path.parents:
            continue
        bad = {m for m in imported_modules(path) if m.startswith("library.anima") or m == "anima_train_network"}
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "generic library code must not know Anima:\n" + "\n".join(offenders)


def test_library_and_networks_never_import_tools_or_the_script() -> None:
    offenders = []
    for folder in ("library", "networks"):
        for path in python_files(ROOT / folder):
            bad = {m for m in imported_modules(path) if m.split(".")[0] in {"tools", "anima_train_network"}}
            if bad:
                offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from library.anima.model import AnimaDiT\nimport os\n", encoding="utf-8")
    assert "library.anima.model" in imported_modules(bad)
