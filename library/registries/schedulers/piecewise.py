"""diffusers' `piecewise_constant`: the rules come from `--lr_scheduler_args step_rules='1:10,0.1:20,0.01'`
(multiplier 1 until step 10, 0.1 until step 20, then 0.01)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from library.errors import ConfigError

from .base import SchedulePlan, SchedulerEntry

FIX = "give them as --lr_scheduler_args step_rules='1:10,0.1:20,0.01'"


def check_rules(kw: dict[str, Any]) -> None:
    """Start-up check (`validate_scheduler`): the rules are there and read as diffusers reads them, "m:step,...,m"
    with ascending steps; diffusers would fail on them only when the scheduler is built, after the models load."""
    rules = kw.get("step_rules")
    if rules is None:
        raise ConfigError(f"--lr_scheduler piecewise_constant needs its rules: {FIX}.")
    *steps, last = str(rules).split(",")
    try:
        float(last)
        pairs = [(float(m), int(s)) for m, s in (rule.split(":") for rule in steps)]
    except ValueError:
        raise ConfigError(f"--lr_scheduler_args step_rules={rules!r}: not of the form multiplier:step,...,multiplier; "
                          f"{FIX}.") from None
    if [s for _m, s in pairs] != sorted(s for _m, s in pairs):
        raise ConfigError(f"--lr_scheduler_args step_rules={rules!r}: the steps must ascend; {FIX}.")
    if unknown := sorted(set(kw) - {"step_rules"}):
        raise ConfigError(f"--lr_scheduler_args {', '.join(unknown)}: piecewise_constant takes step_rules only.")


def _build(opt: torch.optim.Optimizer, plan: SchedulePlan, kw: dict[str, Any]) -> Any:
    from diffusers.optimization import get_piecewise_constant_schedule

    check_rules(kw)
    return get_piecewise_constant_schedule(opt, step_rules=str(kw["step_rules"]))


PIECEWISE_CONSTANT = SchedulerEntry(_build, takes_warmup=False, check=check_rules)
