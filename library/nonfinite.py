"""A NaN or inf loss stops training before it reaches the weights (`--nonfinite_loss stop`, the default), or skips
that step (`--nonfinite_loss skip`).

The check runs after the step's backward passes and before the optimizer step, so the weights are still the last
good ones and nothing already saved is overwritten. Every process takes part in one exchange of the flag per
step, so all of them stop (or skip) at the same step. A skipped step drops its gradients and does not move the
optimizer or the learning-rate schedule; MAX_SKIPPED_IN_A_ROW skipped steps in a row stop the run anyway (then
it is the model or every image that is broken, not one batch).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from library.errors import NonFiniteError
from library.signals import end_run

logger = logging.getLogger(__name__)

MAX_SKIPPED_IN_A_ROW = 3
FIX = ("Check those images (and their captions), delete their latent and text-encoder cache files so they are "
       "encoded again, or lower the learning rate (or use --mixed_precision bf16 rather than fp16)")


class NonFiniteGuard:
    """Collects a step's micro-batch losses (device tensors) and image files; `read_flags` learns, with every process
    and in one host read, whether they were finite; `skip_step` decides what to do."""

    def __init__(self, mode: str, accelerator: Any) -> None:
        self.mode, self.acc = mode, accelerator
        self.losses: list[torch.Tensor] = []
        self.files: list[str] = []
        self.finite: list[bool] = [True]  # per process, from the last `read_flags`
        self.skipped = 0  # skipped steps in this run
        self.in_a_row = 0

    def note(self, loss: torch.Tensor, files: list[str]) -> None:
        self.losses.append(loss.detach())
        self.files += files

    def read_flags(self, signum: int, save_asked: int) -> list[tuple[int, int]]:
        """The step's one wait on the device: each process's "all losses finite" flag, gathered with its stop signal
        and its Save-now request (returned, for `step_requests.agreed_requests`), so that a step reads the device
        once, not once per question."""
        finite = torch.stack(self.losses).isfinite().all()
        if self.acc.num_processes == 1:
            self.finite = [bool(finite)]
            return [(signum, save_asked)]
        asks = [torch.full((), value, dtype=torch.long, device=finite.device) for value in (signum, save_asked)]
        rows = self.acc.gather(torch.stack([finite.long(), *asks])[None]).tolist()
        self.finite = [bool(row[0]) for row in rows]
        return [(int(row[1]), int(row[2])) for row in rows]

    def skip_step(self, step: int, epoch: int) -> bool:
        """True: drop this step. Raises NonFiniteError to stop the run (every process at this same step)."""
        losses, files, self.losses, self.files = self.losses, self.files, [], []
        if all(self.finite):
            self.in_a_row = 0
            return False
        bad = [value for value in (float(loss) for loss in losses) if not math.isfinite(value)]  # rare: read them
        where = f"at step {step} (epoch {epoch})"
        what = (f"the loss is {bad[0]} {where} on the batch of {', '.join(files)}" if bad else
                f"another process's loss is not finite {where} (its message names its images)")
        self.skipped, self.in_a_row = self.skipped + 1, self.in_a_row + 1
        if self.mode == "skip" and self.in_a_row <= MAX_SKIPPED_IN_A_ROW:
            logger.warning("%s; step skipped (no weight update), %d skipped so far. %s.", what, self.skipped, FIX)
            return True
        end_run(self.acc)  # never destroy the process group before os._exit (library/signals.py)
        many = f" ({self.in_a_row} steps in a row)" if self.mode == "skip" else ""
        skip = "; or pass --nonfinite_loss skip to skip such steps" if self.mode == "stop" else ""
        raise NonFiniteError(
            f"{what}{many}. Training stopped before this step changed the weights: the files already saved are "
            f"untouched (resume from the newest state, if --save_state wrote one). {FIX}{skip}.")


def check_finite_tensors(tensors: dict[str, torch.Tensor], file: str) -> None:
    """Refuse to write `file` when a tensor holds NaN or inf: a broken LoRA must never replace a good one."""
    bad = [key for key, tensor in tensors.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise NonFiniteError(
            f"refusing to write {file}: {len(bad)} of its tensors hold NaN or inf (e.g. {bad[0]}). Nothing was "
            "written; the files already saved are untouched. The training diverged: resume from the newest state "
            "with a lower learning rate; with --save_precision fp16 the values may only overflow fp16 (save as bf16).")
