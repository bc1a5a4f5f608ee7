"""LR scheduler registry (`--lr_scheduler`), start-up validation and `build_lr_scheduler`."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from library.errors import ConfigError

from ..kv_args import parse_kv_args
from ..optimizers import adafactor as adafactor_optimizer
from ..optimizers import optimizer_entry
from ..registry import Registry
from . import adafactor, piecewise
from .base import SchedulerEntry, plan_from_args
from .custom import build_custom, load_scheduler_class
from .refused import REASONS, refused_entry
from .transformers_schedules import ENTRIES

logger = logging.getLogger(__name__)

SCHEDULERS: Registry[SchedulerEntry] = Registry("--lr_scheduler")
for _name, _entry in ENTRIES.items():
    SCHEDULERS.register(_name, _entry)
SCHEDULERS.register("piecewise_constant", piecewise.PIECEWISE_CONSTANT)
SCHEDULERS.register("adafactor", adafactor.ADAFACTOR)
for _name in REASONS:
    SCHEDULERS.register(_name, refused_entry(_name))

__all__ = ["SCHEDULERS", "build_lr_scheduler", "validate_scheduler"]


def _special_mode(args: argparse.Namespace) -> str | None:
    """'schedule_free' or 'adafactor' when the optimizer dictates the schedule (kohya replaces it then)."""
    name, entry = optimizer_entry(args)
    if entry.schedule_free:
        return "schedule_free"
    if name == "AdaFactor":
        kwargs = parse_kv_args(getattr(args, "optimizer_args", None), "--optimizer_args")
        if adafactor_optimizer.uses_relative_step(kwargs):
            return "adafactor"
    return None


def _warmup_given(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "lr_warmup_steps", 0))


def validate_scheduler(args: argparse.Namespace) -> None:
    """Name, `--lr_scheduler_args`, warmup range and kohya's scheduler/optimizer combinations."""
    name = getattr(args, "lr_scheduler", "constant")
    entry = SCHEDULERS.get(name)
    scheduler_args = parse_kv_args(getattr(args, "lr_scheduler_args", None), "--lr_scheduler_args")
    if entry.check is not None and not getattr(args, "lr_scheduler_type", None) and _special_mode(args) is None:
        entry.check(scheduler_args)
    plan = plan_from_args(args, 1000, 1)  # checks --lr_warmup_steps / --lr_decay_steps ranges
    if plan.timescale is not None and plan.timescale <= 0:
        raise ConfigError("--lr_scheduler_timescale must be positive.")
    optimizer_name = optimizer_entry(args)[0]
    mode = _special_mode(args)
    if mode == "schedule_free":
        if SCHEDULERS.canonical(name) != "constant" or getattr(args, "lr_scheduler_type", None):
            raise ConfigError(
                f"--optimizer_type {optimizer_name} is schedule-free and needs --lr_scheduler constant "
                f"(got --lr_scheduler {name}); drop --lr_scheduler_type too."
            )
        if _warmup_given(args):
            raise ConfigError(
                f"--optimizer_type {optimizer_name} is schedule-free: set --lr_warmup_steps 0 and give the warmup "
                f"as --optimizer_args warmup_steps=N instead."
            )
    elif mode == "adafactor":
        if _warmup_given(args):
            raise ConfigError(
                "--optimizer_type AdaFactor with relative_step=True uses the adafactor scheduler, which does not take "
                "--lr_warmup_steps; set it to 0 (or pass --optimizer_args relative_step=False)."
            )
        if SCHEDULERS.canonical(name) not in ("constant", "adafactor"):
            logger.warning(
                "AdaFactor with relative_step=True replaces --lr_scheduler %s by the adafactor scheduler", name
            )
    elif SCHEDULERS.canonical(name) == "adafactor":
        raise ConfigError("--lr_scheduler adafactor needs --optimizer_type AdaFactor with relative_step=True.")
    elif getattr(args, "lr_scheduler_type", None):
        load_scheduler_class(args.lr_scheduler_type)
        if _warmup_given(args):
            raise ConfigError("--lr_scheduler_type does not take --lr_warmup_steps; set it to 0.")
    elif not entry.takes_warmup and _warmup_given(args):
        raise ConfigError(
            f"--lr_scheduler {name} does not take --lr_warmup_steps (got {args.lr_warmup_steps}); set it to 0 "
            f"or choose --lr_scheduler constant_with_warmup."
        )


def build_lr_scheduler(
    args: argparse.Namespace, optimizer: torch.optim.Optimizer, num_training_steps: int, num_processes: int = 1
) -> Any:
    """The LR scheduler for `optimizer` (before `accelerator.prepare`). `num_training_steps` is max_train_steps;
    the schedule spans max_train_steps × num_processes as in kohya. Schedule-free optimizers get a constant
    schedule, Adafactor with relative_step its reporting schedule."""
    import torch
    kwargs = parse_kv_args(getattr(args, "lr_scheduler_args", None), "--lr_scheduler_args")
    mode = _special_mode(args)
    if mode == "schedule_free":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)
    if mode == "adafactor":
        return adafactor.adafactor_schedule(optimizer, args.learning_rate)
    if getattr(args, "lr_scheduler_type", None):
        return build_custom(args.lr_scheduler_type, optimizer, kwargs)
    entry = SCHEDULERS.get(args.lr_scheduler)
    plan = plan_from_args(args, num_training_steps, num_processes)
    try:
        return entry.build(optimizer, plan, kwargs)
    except TypeError as exc:
        raise ConfigError(f"--lr_scheduler {args.lr_scheduler} rejected --lr_scheduler_args {kwargs}: {exc}") from None
