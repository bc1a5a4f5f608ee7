"""diffusers' `piecewise_constant`: the rules come from `--lr_scheduler_args step_rules='1:10,0.1:20,0.01'`
(multiplier 1 until step 10, 0.1 until step 20, then 0.01)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from library.errors import ConfigError

from .base import SchedulePlan, SchedulerEntry


def _build(opt: torch.optim.Optimizer, plan: SchedulePlan, kw: dict[str, Any]) -> Any:
    from diffusers.optimization import get_piecewise_constant_schedule

    if "step_rules" not in kw:
        raise ConfigError("--lr_scheduler piecewise_constant needs --lr_scheduler_args step_rules='1:10,0.1'.")
    return get_piecewise_constant_schedule(opt, **kw)


PIECEWISE_CONSTANT = SchedulerEntry(_build, takes_warmup=False)
