"""Warnings logged during the run appear among the monitor page's events, without a change at any call site."""

from __future__ import annotations

import logging

from library.monitor.snapshot import Snapshot


class WarningEvents(logging.Handler):
    """A root-logger handler for WARNING and above, installed while the monitor serves."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(logging.WARNING)
        self.snapshot = snapshot
        logging.getLogger().addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.snapshot.add_event("warning", record.getMessage())
        except Exception:  # noqa: BLE001  (logging must never raise into the training)
            self.handleError(record)

    def remove(self) -> None:
        logging.getLogger().removeHandler(self)
