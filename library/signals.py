"""Ctrl+C / SIGTERM: finish the current step, save a resumable state, then stop.

The handler only sets a flag; the loop checks it between optimizer steps. A second signal while
saving is reported and ignored: every file is written under a temporary name and renamed, so even a
hard kill leaves only complete files behind.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

EXIT_CODE_INTERRUPTED = 130


class StopRequest:
    """Collects SIGINT/SIGTERM into a flag instead of raising KeyboardInterrupt mid-step."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self.saving = False
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if os.getpid() != self._pid:
            return  # a forked DataLoader worker inherited the handler; Ctrl+C reaches the whole group
        name = signal.Signals(signum).name
        if self.saving:
            print(f"\n{name} received while saving; the save continues so nothing is corrupted.", file=sys.stderr)
            return
        if self.requested:
            print(f"\n{name} received again; already stopping after this step.", file=sys.stderr)
            return
        self.requested = True
        self.signal_name = name
        print(f"\n{name} received: finishing this step, then saving a resumable state.", file=sys.stderr)

    def install(self) -> None:
        self._pid = os.getpid()
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
