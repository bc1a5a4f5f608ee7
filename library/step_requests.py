"""What every process acts on after a step: a stop (a signal, or the monitor's Stop) and the monitor's Save now.

The requests travel in the step's one exchange between processes (`NonFiniteGuard.read_flags`), so all processes
save or stop after the same step, whichever process saw the request (a signal may reach any rank; the monitor runs
on the main process only), and no step waits on the device for them.
"""

from __future__ import annotations

from typing import Any

from library.signals import StopRequest


def agreed_requests(accelerator: Any, stop: StopRequest, rows: list[tuple[int, int]]) -> tuple[bool, bool]:
    """(save now, stop) from every process's (signal, save asked) in rank order. Alone, the signal is read now, so
    one that came during this step's saves counts at once."""
    if accelerator.num_processes == 1:
        rows = [(stop.signum, rows[0][1] if rows else 0)]
    return any(save for _, save in rows), stop.agree([signum for signum, _ in rows])
