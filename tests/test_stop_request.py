"""StopRequest's bookkeeping, without a training run: which signal every process stops for and its exit status."""

from __future__ import annotations

import signal

from library.signals import StopRequest, exit_code


def test_exit_status_is_the_shells_128_plus_the_signal() -> None:
    assert (exit_code(signal.SIGINT), exit_code(signal.SIGTERM)) == (130, 143)


def test_all_processes_stop_for_the_first_signal_in_rank_order() -> None:
    stop = StopRequest()
    assert not stop.agree([0, 0]) and stop.signal_name == ""
    assert stop.agree([0, signal.SIGTERM, signal.SIGINT]) and stop.signal_name == "SIGTERM"


def test_a_signal_arriving_during_the_exchange_stops_at_the_next_step() -> None:
    """Caught: agree() overwriting the process's own signal with the exchanged one (a SIGTERM that lands while
    the processes gather theirs is then lost, and the run trains to its end)."""
    stop = StopRequest()
    exchanged = [stop.signum]  # what this process sent before the signal came
    stop._handle(signal.SIGTERM, None)
    assert not stop.agree(exchanged)
    assert stop.agree([stop.signum]) and stop.agreed == signal.SIGTERM
