"""SIGTERM when the launcher dies, so a trainer is never left running on its own.

`accelerate launch` with one process does not pass signals on: on SIGTERM it dies at once (and on SIGINT after a
quarter second), leaving the trainer to train to the end with nobody to stop it. On Linux the kernel can send a
signal when the parent exits (prctl PR_SET_PDEATHSIG); the trainer asks for SIGTERM, which StopRequest turns into
"finish the step, save, stop". Only under a launcher: a trainer started by a shell or a GUI keeps its own life.
The kernel signals when the thread that started the trainer ends, so it may come twice while a multi-threaded
launcher dies (the second is reported as "received again"); both launchers start trainers from their main thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1
LAUNCHER_MODULES = {"accelerate.commands.launch", "torch.distributed.run", "torch.distributed.launch"}
LAUNCHER_PROGRAMS = {"accelerate-launch", "torchrun"}


def is_launcher(argv: list[str]) -> bool:
    """`accelerate launch`, `accelerate-launch`, `torchrun` or `python -m` one of their modules."""
    for index, item in enumerate(argv):
        following = argv[index + 1] if index + 1 < len(argv) else ""
        name = os.path.basename(item)
        if name in LAUNCHER_PROGRAMS or (name == "accelerate" and following == "launch"):
            return True
        if item == "-m" and following in LAUNCHER_MODULES:
            return True
    return False


def process_argv(pid: int) -> list[str]:
    """A process's command line from /proc (empty when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", errors="replace") for part in raw.split(b"\0") if part]


def follow_launcher() -> bool:
    """Ask for SIGTERM when the parent launcher exits; returns whether it was asked (Linux, under a launcher)."""
    parent = os.getppid()
    if not sys.platform.startswith("linux") or not is_launcher(process_argv(parent)):
        return False
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # it died between the check and prctl, so the kernel will not signal any more
        os.kill(os.getpid(), signal.SIGTERM)
    return True

