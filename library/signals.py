"""Ctrl+C / SIGTERM: finish the current step, save a resumable state, then stop.

The handler only sets a flag; the loop checks it between optimizer steps, and all processes agree on it there so
every rank stops at the same step. A second signal while saving is reported and ignored: every file is written
under a temporary name and renamed, so even a hard kill leaves only complete files behind. The exit status is the
shell's 128 + signal number (130 for SIGINT, 143 for SIGTERM), as if the signal's default action had run.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import multiprocessing.context
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
MONITOR_STOP = 256  # not a signal number: a stop the run asked for itself (library/seed_alerts.py)
MONITOR_EXIT = 4  # its exit status (docs/troubleshooting.md)


def exit_code(signum: int) -> int:
    return MONITOR_EXIT if signum == MONITOR_STOP else 128 + signum


def end_run(accelerator: Any) -> None:
    """Finish the trackers; in a multi-process run leave the process group to `exit_worker`'s os._exit. Destroying
    it (accelerate's end_training) lets DDP's reducer free the last reference later, and torch then joins gloo's
    threads while holding the GIL; a gloo thread still freeing the last barrier's tensors waits for that GIL, so the
    worker hung for ever after every file was written (seen about once in 7 runs on a busy machine)."""
    if accelerator.num_processes > 1:
        for tracker in accelerator.trackers:
            tracker.finish()
    else:
        accelerator.end_training()


def exit_worker(code: int) -> None:
    """End an `accelerate launch` worker without interpreter shutdown: gloo's threads sometimes abort it there
    ("terminate called without an active exception", exit 1) after every file was written."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _ignore_stop_signals(then: Callable[[int], None] | None, worker_id: int) -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # started blocked (worker_options): a signal held since is ignored now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if then is not None:
        then(worker_id)


class _BlockedStartProcess(multiprocessing.context.ForkProcess):
    """Forks with SIGINT/SIGTERM blocked: torch's worker start installs its own dying SIGTERM handler before our
    `worker_init_fn` runs, and a group signal in that moment would kill the worker; blocked, it waits and is
    ignored. The parent's mask is restored at once, so a signal it got meanwhile reaches its handler then."""

    def start(self) -> None:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _BlockedStartContext(multiprocessing.context.ForkContext):
    Process = _BlockedStartProcess  # type: ignore[assignment]


def worker_options(num_workers: int) -> dict[str, Any]:
    """DataLoader arguments for workers that never die of a stop signal: `worker_init_fn`, and where workers are
    forked (Linux's default) a context that starts them with the stop signals blocked."""
    options: dict[str, Any] = {"worker_init_fn": worker_init_fn()}
    forked = multiprocessing.get_start_method(allow_none=True) in (None, "fork")
    if num_workers > 0 and forked and "fork" in multiprocessing.get_all_start_methods() \
            and hasattr(signal, "pthread_sigmask"):
        options["multiprocessing_context"] = _BlockedStartContext()
    return options


def worker_init_fn(then: Callable[[int], None] | None = None) -> Callable[[int], None]:
    """A DataLoader `worker_init_fn` that makes its workers ignore SIGINT and SIGTERM, then runs `then`.

    `timeout`, Slurm and a terminal signal the whole process group. torch's worker start replaces the inherited
    SIGTERM handler with its own, which dies, so the main process saw "DataLoader worker is killed by signal" and
    saved nothing. Ignoring both leaves the decision to the main process: it saves, then ends its workers the
    normal way (a worker whose main process is gone still exits by torch's watchdog). A partial of a module-level
    function, so a spawned worker can unpickle it."""
    return functools.partial(_ignore_stop_signals, then)


class StopRequest:
    """Collects SIGINT/SIGTERM into a flag instead of raising KeyboardInterrupt mid-step."""

    def __init__(self) -> None:
        self.signum = 0  # the first stop signal this process received
        self.agreed = 0  # the one all processes stop for (0: none yet)
        self.saving = False
        self.reason = ""  # why this process asked to stop itself (`alert_stop`)
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()

    @property
    def requested(self) -> bool:
        return self.signum != 0

    @property
    def signal_name(self) -> str:
        if self.agreed == MONITOR_STOP:
            return self.reason or "another process's monitor alert"
        return signal.Signals(self.agreed).name if self.agreed else ""

    def alert_stop(self, reason: str) -> None:
        """Stop for `reason` (the seed's alert policy) as for a signal: this step finishes, a resumable state is
        saved, the command is shown."""
        if not self.requested:
            self.signum, self.reason = MONITOR_STOP, reason

    def agree(self, signums: list[int]) -> bool:
        """Every process's `signum` in rank order: all stop for the first one seen, or none stops. `signum` is
        left alone, so a signal that arrives while the processes exchange theirs counts at the next step."""
        self.agreed = next((s for s in signums if s), 0)
        return bool(self.agreed)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if os.getpid() != self._pid:
            return  # a forked DataLoader worker inherited the handler; Ctrl+C reaches the whole group
        print(f"\n{self.ask(signum, signal.Signals(signum).name + ' received')}", file=sys.stderr)

    def ask(self, signum: int, what: str) -> str:
        """A stop for `signum`, from its handler or from elsewhere (the monitor's Stop button does what Ctrl+C
        does); returns the sentence that says what happens now."""
        if self.saving:
            return f"{what} while saving; the save continues so nothing is corrupted."
        if self.requested:
            return f"{what} again; already stopping after this step."
        self.signum = signum
        return f"{what}: finishing this step, then saving a resumable state."

    def install(self) -> None:
        self._pid = os.getpid()
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
