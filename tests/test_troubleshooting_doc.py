"""docs/troubleshooting.md stays true to the code: every file that raises a user error is covered by a section,
and every option, tool and doc page it (and docs/lora_vs_lokr.md) names exists, so a renamed option cannot leave
a stale fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from library.anima.args import add_anima_arguments
from library.args import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "troubleshooting.md"
CHECKED_DOCS = (DOC, ROOT / "docs" / "lora_vs_lokr.md")
USER_ERROR_CALL = re.compile(r"\b(?:ConfigError|ModelFileError|UserError)\(")
SOURCES = ("library", "networks", "tools", "anima_train_network.py")


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def raising_files() -> list[str]:
    files: list[Path] = []
    for name in SOURCES:
        path = ROOT / name
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [p.relative_to(ROOT).as_posix() for p in files
            if p.name != "errors.py" and "__pycache__" not in p.parts
            and USER_ERROR_CALL.search(p.read_text(encoding="utf-8"))]


def covered_files(text: str) -> set[str]:
    """The files named on the sections' `Raised in:` lines (a line may wrap onto the next ones)."""
    blocks = re.findall(r"^Raised in:(.*?)(?:\n\n|\n\|)", text, flags=re.M | re.S)
    return {name for block in blocks for name in re.findall(r"`([\w/.]+\.py)`", block)}


def tool_options() -> set[str]:
    options: set[str] = set()
    for path in (ROOT / "tools").glob("*.py"):
        for call in re.findall(r"add_argument\((.*?)\)", path.read_text(encoding="utf-8"), flags=re.S):
            options.update(re.findall(r"[\"'](--[\w-]+)[\"']", call))
    return options


def test_every_file_that_raises_a_user_error_has_a_section() -> None:
    raising = raising_files()
    assert "library/state.py" in raising and "networks/_args.py" in raising  # the scan itself works
    missing = sorted(set(raising) - covered_files(doc_text()))
    assert not missing, f"add these to a 'Raised in:' line of docs/troubleshooting.md, with their messages: {missing}"


def test_covered_files_exist() -> None:
    stale = sorted(name for name in covered_files(doc_text()) if not (ROOT / name).is_file())
    assert not stale, f"docs/troubleshooting.md names files that do not exist: {stale}"


@pytest.mark.parametrize("doc", CHECKED_DOCS, ids=lambda p: p.name)
def test_every_option_named_exists(doc: Path) -> None:
    parser = build_parser("test")
    add_anima_arguments(parser)
    known = set(parser._option_string_actions) | tool_options()
    named = set(re.findall(r"(?<![\w-])--[a-z][\w-]*[a-z0-9]", doc.read_text(encoding="utf-8")))
    assert "--network_dropout" in named or "--mixed_precision" in named  # the pattern finds options
    unknown = sorted(named - known)
    assert not unknown, f"{doc.name} names options no parser has: {unknown}"


@pytest.mark.parametrize("doc", CHECKED_DOCS, ids=lambda p: p.name)
def test_every_tool_and_doc_named_exists(doc: Path) -> None:
    paths = set(re.findall(r"(?:tools|docs|configs)/[\w./]+\.(?:py|md)|configs/\w+", doc.read_text(encoding="utf-8")))
    assert "tools/check_anima_models.py" in paths  # both pages point to it
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"{doc.name} names files that do not exist: {missing}"
