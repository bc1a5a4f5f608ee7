"""What the monitor page is fed, without a server or a training run: chart points by index, sample files by id
only, warnings as events, and the stop / save requests as the loop reads them.

Breaks these catch (each tried once, each failed): `view` ignoring `since` (the page would append every point again
at each poll); `sample_file` without its range check (-1 would serve the newest file); `WarningEvents` not added to
the root logger; `_ask_stop` not going through `StopRequest.ask` (the loop never sees the stop).
"""

from __future__ import annotations

import logging
import signal
from argparse import Namespace
from pathlib import Path

from library.monitor.run_monitor import RunMonitor
from library.monitor.snapshot import Snapshot
from library.monitor.warning_events import WarningEvents
from library.signals import StopRequest


def test_the_page_gets_only_the_points_it_lacks() -> None:
    snapshot = Snapshot(5, {}, ["unet"])
    for step in (1, 2, 3):
        snapshot.add_point(step, 1.0 / step, 1.0, [1e-3], None)
    view = snapshot.view(since=2)
    assert view["points_from"] == 2 and view["points"] == [[3, 1.0 / 3, 1.0, 1e-3]]
    assert [p[0] for p in snapshot.view()["points"]] == [1, 2, 3]


def test_sample_files_are_reached_by_the_runs_own_ids_only(tmp_path: Path) -> None:
    snapshot = Snapshot(5, {}, [])
    snapshot.add_sample(4, tmp_path / "a.png", "a red circle")
    snapshot.add_sample(8, tmp_path / "b.png", "a blue square")
    assert snapshot.sample_file(1) == tmp_path / "b.png"
    assert snapshot.sample_file(2) is None and snapshot.sample_file(-1) is None
    assert "path" not in str(snapshot.view()["samples"]) and str(tmp_path) not in str(snapshot.view())


def test_a_logged_warning_becomes_an_event() -> None:
    snapshot = Snapshot(5, {}, [])
    handler = WarningEvents(snapshot)
    try:
        logging.getLogger("library.somewhere").warning("disk nearly full: %d MiB left", 12)
        logging.getLogger("library.somewhere").info("not an event")
    finally:
        handler.remove()
    logging.getLogger("library.somewhere").warning("after the run")
    assert [(e["kind"], e["text"]) for e in snapshot.view()["events"]] == [("warning", "disk nearly full: 12 MiB left")]


def test_stop_is_ctrl_c_and_save_is_taken_once() -> None:
    """The page's Stop sets the same request a SIGINT sets; Save now is one request, consumed by the next step."""
    stop = StopRequest()
    monitor = RunMonitor(Namespace(monitor=False, max_train_steps=5), Namespace(is_main_process=True), stop, [], {})
    assert monitor.take_save_request() == 0
    monitor._ask_save()
    assert (monitor.take_save_request(), monitor.take_save_request()) == (1, 0)
    assert "finishing this step" in monitor._ask_stop()
    assert stop.signum == signal.SIGINT and stop.agree([stop.signum]) and stop.signal_name == "SIGINT"
    assert "already stopping" in monitor._ask_stop()
