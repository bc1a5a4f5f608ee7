"""library/launcher_death.py: a trainer whose launcher dies gets SIGTERM, one started otherwise does not.

Real processes: a stand-in launcher (a script named `torchrun`) starts a child that calls follow_launcher, then
exits; the child must report the kernel's SIGTERM. The same with a parent of another name must not.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from library import launcher_death
from library.launcher_death import is_launcher

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import os, signal, time
from library.launcher_death import follow_launcher
signal.signal(signal.SIGTERM, lambda *_: (print("SIGTERM", flush=True), os._exit(0)))
print("following" if follow_launcher() else "not following", flush=True)
time.sleep(60)
"""
PARENT = f"""
import subprocess, sys
subprocess.Popen([sys.executable, "-c", {CHILD!r}], stdin=subprocess.DEVNULL)
sys.stdin.readline()  # the test says when the child is ready; then this "launcher" dies
"""


@pytest.mark.parametrize("argv", [
    ["/venv/bin/python", "/venv/bin/accelerate", "launch", "--num_processes", "2", "train.py"],
    ["python", "-m", "accelerate.commands.launch", "train.py"],
    ["/venv/bin/python", "/venv/bin/accelerate-launch", "train.py"],
    ["/venv/bin/python", "/venv/bin/torchrun", "--nproc_per_node", "2", "train.py"],
    ["python3", "-m", "torch.distributed.run", "train.py"],
])
def test_launchers_are_recognised(argv: list[str]) -> None:
    assert is_launcher(argv)


@pytest.mark.parametrize("argv", [
    ["/bin/bash"], ["python", "anima_train_network.py"], ["python", "-m", "pytest"],
    ["/venv/bin/python", "/venv/bin/accelerate", "config"], ["python", "/data/torchrun_logs/train.py"], [],
])
def test_other_parents_are_not(argv: list[str]) -> None:
    assert not is_launcher(argv)


def read_line(stream: object, timeout: float) -> str:
    """One line of a child's output within `timeout` seconds ("" at the end of the output or on time-out)."""
    ready, _, _ = select.select([stream], [], [], timeout)  # unbuffered, so select sees every line
    return stream.readline().decode().strip() if ready else ""  # type: ignore[attr-defined]


def run_parent(tmp_path: Path, name: str) -> tuple[str, str]:
    """The child's first line, then its next line after its parent `name` exited (within 10 s)."""
    script = tmp_path / name
    script.write_text(PARENT, encoding="utf-8")
    parent = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, bufsize=0, start_new_session=True)
    try:
        first = read_line(parent.stdout, 60)
        parent.stdin.write(b"\n")  # type: ignore[union-attr]
        parent.stdin.flush()  # type: ignore[union-attr]
        parent.wait(timeout=10)
        return first, read_line(parent.stdout, 10 if "not" not in first else 1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)  # the child stays in the parent's session


def test_the_child_of_a_dying_launcher_gets_sigterm(tmp_path: Path) -> None:
    """Caught: no prctl call, or the wrong signal in it (the child sleeps on, or dies without its handler)."""
    first, after = run_parent(tmp_path, "torchrun")
    assert first.startswith("following") and after == "SIGTERM"


def test_the_child_of_another_parent_lives_on(tmp_path: Path) -> None:
    """Caught: following any parent (a GUI or script that starts the trainer and exits would stop it)."""
    first, after = run_parent(tmp_path, "start_training")
    assert first.startswith("not following") and after == ""


def test_a_launcher_that_died_before_prctl_still_stops_the_trainer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher exits between the parent check and prctl: the kernel will never signal, so the trainer
    signals itself. Caught: dropping the getppid re-check. (prctl is faked: it must not touch pytest itself.)"""
    parents = iter([4242, 1])
    calls: list[tuple[int, ...]] = []

    class FakeLibc:
        def prctl(self, *args: int) -> int:
            calls.append(args)
            return 0

    monkeypatch.setattr(launcher_death.os, "getppid", lambda: next(parents))
    monkeypatch.setattr(launcher_death, "process_argv", lambda pid: ["python", "/venv/bin/torchrun", "x.py"])
    monkeypatch.setattr(launcher_death.ctypes, "CDLL", lambda *_args, **_kw: FakeLibc())
    monkeypatch.setattr(launcher_death.os, "kill", lambda pid, signum: calls.append((pid, signum)))
    assert launcher_death.follow_launcher()
    assert calls == [(launcher_death.PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0), (os.getpid(), signal.SIGTERM)]

