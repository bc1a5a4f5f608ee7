"""The training loop's side of the monitor (`--monitor`): what it reports at step boundaries, and the page's two
requests (save now, stop) as flags the loop reads there.

A no-op off the main process or without --monitor, so the loop calls it unconditionally. A monitor that cannot
start is a warning, never a reason to stop training; so is a failure while feeding it.
"""

from __future__ import annotations

import collections
import logging
import signal
import socket
import sys
import threading
import time
from argparse import Namespace
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from library.monitor.memory import memory_figures
from library.monitor.security import new_token
from library.monitor.server import MonitorServer
from library.monitor.settings import run_settings
from library.monitor.snapshot import Snapshot
from library.monitor.warning_events import WarningEvents
from library.signals import StopRequest

logger = logging.getLogger(__name__)

LINGER_S = 5.0  # how long a finished run waits for an open page to fetch its last events
SPEED_WINDOW = 20  # steps the s/step figure averages over


class RunMonitor:
    def __init__(self, args: Namespace, accelerator: Any, stop: StopRequest, lr_names: Sequence[str],
                 metadata: dict[str, str]) -> None:
        self.acc, self.stop, self.total = accelerator, stop, args.max_train_steps
        self.snapshot: Snapshot | None = None
        self.server: MonitorServer | None = None
        self._save_wanted = threading.Event()
        self._times: collections.deque[tuple[float, int]] = collections.deque(maxlen=SPEED_WINDOW + 1)
        self._warnings: WarningEvents | None = None
        if getattr(args, "monitor", False) and accelerator.is_main_process:
            self._start(args, list(lr_names), metadata)

    def _start(self, args: Namespace, lr_names: list[str], metadata: dict[str, str]) -> None:
        snapshot = Snapshot(args.max_train_steps, run_settings(args, metadata), lr_names)
        token = new_token()
        try:
            self.server = MonitorServer(snapshot, token, {"save": self._ask_save, "stop": self._ask_stop},
                                        args.monitor_host, args.monitor_port)
            self.server.start()
        except OSError as exc:
            logger.warning("the training monitor could not start on %s:%s (%s); training goes on without it.",
                           args.monitor_host, args.monitor_port, exc.strerror or exc)
            self.server = None
            return
        self.snapshot = snapshot
        self._warnings = WarningEvents(snapshot)
        host = socket.gethostname() if args.monitor_host in ("0.0.0.0", "::") else args.monitor_host
        host = f"[{host}]" if ":" in host else host
        self.acc.print(f"Training monitor: http://{host}:{self.server.port}/?token={token}")

    # ---- the page's requests (server thread) --------------------------------------------------------
    def _ask_save(self) -> str:
        self._save_wanted.set()
        return "A LoRA and a resumable state will be saved after this step."

    def _ask_stop(self) -> str:
        message = self.stop.ask(signal.SIGINT, "Stop asked for in the training monitor")
        print(f"\n{message}", file=sys.stderr)
        return message

    def take_save_request(self) -> int:
        """1 once after the page asked for a save (then cleared), else 0: what this process adds to the agreement."""
        if self._save_wanted.is_set():
            self._save_wanted.clear()
            return 1
        return 0

    # ---- what the loop reports ------------------------------------------------------------------------
    def step(self, step: int, epoch: int, losses: Sequence[tuple[int, float]], average_over: int,
             lrs: Sequence[float]) -> None:
        """After optimizer step `step`: its loss (None for a skipped, non-finite step), the moving average over
        `average_over` steps as the progress bar shows it, each group's learning rate, speed and memory."""
        if self.snapshot is None:
            return
        now = time.monotonic()
        self._times.append((now, step))
        loss = losses[-1][1] if losses and losses[-1][0] == step else None
        recent = [value for _, value in losses[-average_over:]]
        average = sum(recent) / len(recent) if recent else None
        (t0, s0), (t1, s1) = self._times[0], self._times[-1]
        speed = (t1 - t0) / (s1 - s0) if s1 > s0 else None
        self.snapshot.add_point(step, loss, average, [float(lr) for lr in lrs], memory_figures(self.acc.device))
        self.snapshot.progress(step=step, epoch=epoch, s_per_step=speed, status="training",
                               eta_s=speed * max(0, self.total - step) if speed is not None else None)

    def samples(self, step: int, files: Sequence[Path]) -> None:
        """Sample images this run wrote: the page shows them by id, with the prompt stored in the PNG."""
        for path in files if self.snapshot is not None else ():
            self.snapshot.add_sample(step, Path(path), _prompt_of(Path(path)))

    def event(self, kind: str, text: str) -> None:
        if self.snapshot is not None:
            self.snapshot.add_event(kind, text)

    def status(self, status: str) -> None:
        if self.snapshot is not None:
            self.snapshot.progress(status=status)

    def close(self, status: str, message: str | None = None) -> None:
        """The run ends (`status` finished / stopped / failed): the last event, a moment for an open page to
        fetch it, then the server goes. Safe to call twice."""
        if self.snapshot is None or self.server is None:
            return
        if message:
            self.snapshot.add_event(status, message)
        self.snapshot.progress(status=status)
        if self._warnings is not None:
            self._warnings.remove()
        server, self.server = self.server, None
        server.close(LINGER_S)


def _prompt_of(path: Path) -> str:
    """The prompt a sample PNG records in its text chunks (empty when it has none)."""
    try:
        with Image.open(path) as image:
            return str(getattr(image, "text", {}).get("prompt", ""))
    except OSError:
        return ""
