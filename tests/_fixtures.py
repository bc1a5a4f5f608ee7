"""Where the tests' recorded data lives: inside the repository, so a plain clone runs every test."""

from __future__ import annotations

from pathlib import Path

import pytest

COMFY = Path(__file__).resolve().parent / "fixtures" / "comfy_conditioning"


def comfy_fixture(name: str) -> Path:
    """A file of ComfyUI's recorded Anima conditioning (see fixtures/comfy_conditioning/README.md)."""
    path = COMFY / name
    if not path.exists():
        pytest.fail(f"golden data missing: {path}. It is part of the repository; restore it with `git checkout -- {path}`.")
    return path
