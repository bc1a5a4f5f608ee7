"""The trainers a launcher started, and adopting them when it dies, for tests that signal `accelerate launch`.

With PR_SET_CHILD_SUBREAPER this (pytest) process becomes the parent of its descendants' orphans, so a trainer
left behind by a dead launcher can still be waited on and its exit status read. Every wait has a deadline, and
`kill_tree` removes whatever a failed test left running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
TRAINER = "anima_train_network.py"


def _prctl(option: int, value: int) -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl failed")


@contextlib.contextmanager
def adopting_orphans() -> Iterator[None]:
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        yield
    finally:
        _prctl(PR_SET_CHILD_SUBREAPER, 0)


def _read(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def is_trainer(pid: int) -> bool:
    return TRAINER.encode() in _read(pid, "cmdline")


def trainers_of(parent: int) -> list[int]:
    """Running trainer processes whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        stat = _read(int(entry.name), "stat") if entry.name.isdigit() else b""
        if stat and int(stat[stat.rindex(b")") + 2:].split()[1]) == parent and is_trainer(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def rank_of(pid: int) -> int:
    """The RANK accelerate / torch elastic gave a trainer (0 without one)."""
    variables = dict(item.split(b"=", 1) for item in _read(pid, "environ").split(b"\0") if b"=" in item)
    return int(variables.get(b"RANK", b"0"))


def wait_adopted(pid: int, timeout: float = 60.0) -> int:
    """Exit status (negative: killed by that signal) of a process adopted by `adopting_orphans`."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} still running after {timeout} s")
        time.sleep(0.05)


def kill_tree(launcher: int, trainers: list[int]) -> None:
    """SIGKILL the launcher's session and any trainer still running, and reap those adopted here."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(launcher, signal.SIGKILL)
    for pid in trainers:
        if is_trainer(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # torch elastic's workers lead their own sessions, so killpg misses them
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
