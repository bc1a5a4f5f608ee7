"""transformers' `AdafactorSchedule`, which only reports the LR that Adafactor (relative_step) computes itself.

kohya switches to it automatically when Adafactor runs with relative_step; `--lr_scheduler adafactor` asks
for it directly. `--learning_rate` is the LR reported before the first step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from .base import SchedulePlan, SchedulerEntry


def adafactor_schedule(opt: torch.optim.Optimizer, initial_lr: float | None) -> Any:
    from transformers.optimization import AdafactorSchedule

    return AdafactorSchedule(opt, initial_lr=initial_lr or 0.0)


def _build(opt: torch.optim.Optimizer, plan: SchedulePlan, kw: dict[str, Any]) -> Any:
    return adafactor_schedule(opt, kw.get("initial_lr"))


ADAFACTOR = SchedulerEntry(_build, takes_warmup=False)
