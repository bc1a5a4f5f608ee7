"""Run the trainer as a real subprocess and watch its output, for signal and crash tests.

A subprocess is needed because these tests deliver real signals (SIGINT, SIGTERM, SIGKILL); the output is read
by a thread so a test can wait on what the trainer printed (tqdm's "N/M" step counter) instead of sleeping.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = "anima_train_network.py"


class TrainProcess:
    """One `python anima_train_network.py ...` run; collects stdout and stderr as they arrive."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, new_session: bool = False,
                 command: list[str] | None = None) -> None:
        """`command` replaces `python anima_train_network.py args` (e.g. an `accelerate launch` line)."""
        full_env = os.environ | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"} | (env or {})
        self.proc = subprocess.Popen(command or [sys.executable, SCRIPT, *args], cwd=REPO, env=full_env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=new_session)
        self._chunks: dict[str, list[str]] = {"out": [], "err": []}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._read, args=(stream, key), daemon=True)
                         for stream, key in ((self.proc.stdout, "out"), (self.proc.stderr, "err"))]
        for thread in self._threads:
            thread.start()

    def _read(self, stream: object, key: str) -> None:
        fd = stream.fileno()  # type: ignore[attr-defined]
        while chunk := os.read(fd, 4096):
            with self._lock:
                self._chunks[key].append(chunk.decode("utf-8", errors="replace"))

    @property
    def stdout(self) -> str:
        with self._lock:
            return "".join(self._chunks["out"])

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self._chunks["err"])

    def steps_done(self, total: int) -> int:
        """The highest optimizer step tqdm has reported so far ("steps: ... 3/400")."""
        found = re.findall(rf"(\d+)/{total} \[", self.stderr)
        return max((int(n) for n in found), default=0)

    def wait_for_step(self, step: int, total: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.steps_done(total) < step:
            if self.proc.poll() is not None:
                raise AssertionError(f"trainer exited ({self.proc.returncode}) before step {step}:\n{self.stderr[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no step {step} within {timeout} s:\n{self.stderr[-3000:]}")
            time.sleep(0.05)

    def wait_for_text(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared:\n{self.stderr[-3000:]}")
            time.sleep(0.02)

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        return code


def run_to_end(args: list[str], env: dict[str, str] | None = None, timeout: float = 60.0) -> TrainProcess:
    process = TrainProcess(args, env)
    process.wait(timeout)
    return process
