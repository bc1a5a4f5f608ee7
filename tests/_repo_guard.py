"""Tests read and write only inside the repository (and their own temporary folders).

An audit hook (PEP 578) sees every `open` of the test process. A path that exists and lies outside the repository,
the test session's temporary folder and the Python installation is recorded, and the test that opened it fails:
so a test that reads data beside the repository (as `../shared/` once was) fails on every machine, not only on a
plain clone.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SYSTEM = ("/proc", "/sys", "/dev", "/etc", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/run")


class RepoGuard:
    """Records opens of paths outside the allowed folders while `armed`."""

    def __init__(self, temp_root: Path) -> None:
        python = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages(),
                  *sysconfig.get_paths().values()}
        self.allowed = tuple(sorted({str(REPO), str(temp_root), *SYSTEM, *(os.path.realpath(p) for p in python)}))
        self.seen: list[str] = []
        self.armed = False

    def is_outside(self, path: str | os.PathLike) -> bool:
        real = os.path.realpath(path)
        return not any(real == root or real.startswith(root.rstrip("/") + "/") for root in self.allowed)

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.armed or event != "open" or not isinstance(args[0], str | bytes | os.PathLike):
            return
        path = os.fsdecode(args[0])
        self.armed = False  # the checks below open nothing, but never recurse
        try:
            if os.path.exists(path) and self.is_outside(path):
                self.seen.append(os.path.realpath(path))
        finally:
            self.armed = True

    def take(self) -> list[str]:
        seen, self.seen = self.seen, []
        return seen
