"""What every process acts on after a step: a stop (a signal, or the monitor's Stop) and the monitor's Save now.

One collective per step carries both, so all processes save or stop after the same step, whichever process saw
the request (a signal may reach any rank; the monitor runs on the main process only).
"""

from __future__ import annotations

from typing import Any

import torch

from library.signals import StopRequest


def agreed_requests(accelerator: Any, stop: StopRequest, save_asked: int) -> tuple[bool, bool]:
    """(save now, stop) as all processes agree on them; `save_asked` is this process's 1 or 0."""
    flags = torch.tensor([[stop.signum, save_asked]], device=accelerator.device)
    if accelerator.num_processes > 1:
        flags = accelerator.gather(flags)
    rows = flags.tolist()
    return any(row[1] for row in rows), stop.agree([int(row[0]) for row in rows])
