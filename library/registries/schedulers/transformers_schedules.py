"""The transformers schedules kohya offers by name, with the `--lr_scheduler_*` options each one reads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from .base import SchedulePlan, SchedulerEntry


def _tf(function: str):  # noqa: ANN202 - returns a module attribute chosen at call time
    import transformers.optimization as optimization

    return getattr(optimization, function)


def _constant(opt: torch.optim.Optimizer, plan: SchedulePlan, kw: dict[str, Any]) -> Any:
    return _tf("get_constant_schedule")(opt, **kw)


def _constant_with_warmup(opt: torch.optim.Optimizer, plan: SchedulePlan, kw: dict[str, Any]) -> Any:
    return _tf("get_constant_schedule_with_warmup")(opt, num_warmup_steps=plan.warmup, **kw)


def _linear(opt: torch.optim.Optimizer, plan: SchedulePlan, kw: dict[str, Any]) -> Any:
    return _tf("get_linear_schedule_with_warmup")(opt, plan.warmup, plan.total, **kw)


def _cosine(opt: torch.optim.Optimizer, plan: SchedulePlan, kw: dict[str, Any]) -> Any:
    return _tf("get_cosine_schedule_with_warmup")(opt, plan.warmup, plan.total, **kw)


def _cosine_with_restarts(opt: torch.optim.Optimizer, plan: SchedulePlan, kw: dict[str, Any]) -> Any:
    kw = {"num_cycles": plan.num_cycles, **kw}
    return _tf("get_cosine_with_hard_restarts_schedule_with_warmup")(opt, plan.warmup, plan.total, **kw)


def _polynomial(opt: torch.optim.Optimizer, plan: SchedulePlan, kw: dict[str, Any]) -> Any:
    kw = {"power": plan.power, **kw}
    return _tf("get_polynomial_decay_schedule_with_warmup")(opt, plan.warmup, plan.total, **kw)


def _inverse_sqrt(opt: torch.optim.Optimizer, plan: SchedulePlan, kw: dict[str, Any]) -> Any:
    kw = {"timescale": plan.timescale, **kw}
    return _tf("get_inverse_sqrt_schedule")(opt, num_warmup_steps=plan.warmup, **kw)


def _min_lr_kwargs(plan: SchedulePlan, kw: dict[str, Any]) -> dict[str, Any]:
    """kohya passes half the cycle count, so num_cycles=1 is one cosine half-wave down to the floor; the floor is
    --lr_scheduler_min_lr_ratio (0 when unset) unless --lr_scheduler_args gives min_lr or min_lr_rate itself
    (transformers takes only one of the two)."""
    floor = {} if "min_lr" in kw else {"min_lr_rate": plan.min_lr_ratio or 0.0}
    return {"num_cycles": plan.num_cycles / 2, **floor, **kw}


def _cosine_with_min_lr(opt: torch.optim.Optimizer, plan: SchedulePlan, kw: dict[str, Any]) -> Any:
    return _tf("get_cosine_with_min_lr_schedule_with_warmup")(opt, plan.warmup, plan.total, **_min_lr_kwargs(plan, kw))


def _cosine_warmup_with_min_lr(opt: torch.optim.Optimizer, plan: SchedulePlan, kw: dict[str, Any]) -> Any:
    """cosine_with_min_lr whose warmup starts at warmup_lr_rate (--lr_scheduler_args; transformers' default
    1/warmup) instead of 0."""
    function = _tf("get_cosine_with_min_lr_schedule_with_warmup_lr_rate")
    return function(opt, plan.warmup, plan.total, **_min_lr_kwargs(plan, kw))


def _warmup_stable_decay(opt: torch.optim.Optimizer, plan: SchedulePlan, kw: dict[str, Any]) -> Any:
    kw = {
        "num_stable_steps": max(0, plan.total - plan.warmup - plan.decay),
        "min_lr_ratio": plan.min_lr_ratio or 0.0,
        "num_cycles": plan.num_cycles / 2,
        **kw,
    }
    return _tf("get_wsd_schedule")(opt, num_warmup_steps=plan.warmup, num_decay_steps=plan.decay, **kw)


ENTRIES: dict[str, SchedulerEntry] = {
    "constant": SchedulerEntry(_constant, takes_warmup=False),
    "constant_with_warmup": SchedulerEntry(_constant_with_warmup),
    "linear": SchedulerEntry(_linear),
    "cosine": SchedulerEntry(_cosine),
    "cosine_with_restarts": SchedulerEntry(_cosine_with_restarts),
    "polynomial": SchedulerEntry(_polynomial),
    "inverse_sqrt": SchedulerEntry(_inverse_sqrt),
    "cosine_with_min_lr": SchedulerEntry(_cosine_with_min_lr),
    "cosine_warmup_with_min_lr": SchedulerEntry(_cosine_warmup_with_min_lr),
    "warmup_stable_decay": SchedulerEntry(_warmup_stable_decay),
}
