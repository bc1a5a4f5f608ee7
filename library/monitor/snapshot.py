"""What the monitor page shows, as the training loop last wrote it.

The loop writes at step boundaries and the server thread reads; both hold the lock only to copy plain values, so a
slow or hung browser (whose socket the server writes to outside the lock) can never hold up a step.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

MAX_EVENTS = 200


class Snapshot:
    """The run's state for the page. Sample files are kept by id, apart from what the page gets: a request can
    only name an id of a file this run wrote, never a path."""

    def __init__(self, total_steps: int, settings: dict[str, str], lr_names: list[str]) -> None:
        self._lock = threading.Lock()
        self._progress: dict[str, Any] = {"step": 0, "total": total_steps, "epoch": 0, "s_per_step": None,
                                          "eta_s": None, "status": "starting"}
        self._settings = dict(settings)
        self._lr_names = list(lr_names)
        self._points: list[list[float | None]] = []  # [step, loss, moving average, lr of each group...]
        self._events: list[dict[str, Any]] = []
        self._samples: list[dict[str, Any]] = []
        self._sample_files: list[Path] = []
        self._memory: dict[str, float] | None = None
        self.version = 0  # bumped by every write; the server notes the newest one a page has fetched

    def progress(self, **fields: Any) -> None:
        with self._lock:
            self._progress.update(fields)
            self.version += 1

    def add_point(self, step: int, loss: float | None, average: float | None, lrs: list[float],
                  memory: dict[str, float] | None) -> None:
        with self._lock:
            self._points.append([step, loss, average, *lrs])
            self._memory = memory
            self.version += 1

    def add_event(self, kind: str, text: str) -> None:
        with self._lock:
            self._events.append({"time": time.time(), "kind": kind, "text": text})
            del self._events[:-MAX_EVENTS]
            self.version += 1

    def add_sample(self, step: int, path: Path, prompt: str) -> None:
        with self._lock:
            self._samples.append({"id": len(self._sample_files), "step": step, "name": path.name, "prompt": prompt})
            self._sample_files.append(path)
            self.version += 1

    def sample_file(self, sample_id: int) -> Path | None:
        """The file of sample `sample_id`, or None for an id this run never gave out."""
        with self._lock:
            return self._sample_files[sample_id] if 0 <= sample_id < len(self._sample_files) else None

    def view(self, since: int = 0) -> dict[str, Any]:
        """A copy for the page: chart points from index `since` on (the page keeps the earlier ones), the newest
        samples, every event."""
        with self._lock:
            return {"version": self.version, "progress": dict(self._progress), "settings": dict(self._settings),
                    "lr_names": list(self._lr_names), "points_from": max(0, since),
                    "points": [list(p) for p in self._points[max(0, since):]],
                    "samples": [dict(s) for s in self._samples[-12:]], "events": [dict(e) for e in self._events],
                    "memory": dict(self._memory) if self._memory else None}
