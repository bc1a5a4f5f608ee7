"""Step losses read from the device in batches: every `--logging_every_n_steps` steps, one read for all of them.

Why: reading a loss as a Python number makes the host wait until the GPU has finished the step, so the next step's
work cannot be queued behind it. Every step's loss is kept as a device tensor with the host-side values of that
step (its learning rates), and all of them reach the logs, the loss CSV and the progress bar at the next read, each
with its own step number: nothing is lost, the numbers only arrive later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class StepRow:
    """One optimizer step as the logs show it; `groups` keeps each param group's `lr` and adapted step size `d`."""

    step: int
    loss: float
    lrs: list[float]
    groups: list[dict[str, Any]]


class StepReadout:
    def __init__(self, every: int) -> None:
        self.every = max(1, every)
        self._pending: list[tuple[int, torch.Tensor, list[float], list[dict[str, Any]]]] = []

    def add(self, step: int, loss: torch.Tensor, lrs: Sequence[float], param_groups: Sequence[dict[str, Any]]) -> None:
        groups = [{key: group[key] for key in ("lr", "d") if key in group} for group in param_groups]
        self._pending.append((step, loss.detach(), list(lrs), groups))

    def due(self, step: int) -> bool:
        return bool(self._pending) and step % self.every == 0

    def take(self) -> list[StepRow]:
        """The pending steps with their losses as numbers: one host read for all of them (none when nothing waits)."""
        if not self._pending:
            return []
        values = torch.stack([loss.float() for _, loss, _, _ in self._pending]).tolist()
        rows = [StepRow(step, value, lrs, groups) for (step, _, lrs, groups), value in zip(self._pending, values,
                                                                                             strict=True)]
        self._pending = []
        return rows
