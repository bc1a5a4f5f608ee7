"""The step counts a scheduler is built from, resolved once with kohya's rules."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from library.errors import ConfigError


@dataclass(frozen=True)
class SchedulePlan:
    """kohya's scheduler inputs. `total` is max_train_steps × num_processes because accelerate steps the wrapped
    scheduler once per process for each optimizer step; an integer warmup is not multiplied, a fraction is
    taken of `total`."""

    total: int
    warmup: int
    decay: int
    num_cycles: float
    power: float
    timescale: int | None
    min_lr_ratio: float | None


@dataclass(frozen=True)
class SchedulerEntry:
    """A builder plus whether the schedule has a warmup phase (kohya rejects a warmup for those that do not)."""

    build: Callable[[torch.optim.Optimizer, SchedulePlan, dict[str, Any]], Any]
    takes_warmup: bool = True
    check: Callable[[dict[str, Any]], None] | None = None  # start-up check of --lr_scheduler_args


def resolve_steps(value: int | float | None, total: int, option: str) -> int:
    """A step count, or a fraction in [0, 1) of `total`."""
    if value is None:
        return 0
    if isinstance(value, bool) or value < 0:
        raise ConfigError(f"{option} must be a step count >= 0 or a fraction in [0, 1) (got {value!r}).")
    if isinstance(value, float):
        if value >= 1:
            raise ConfigError(
                f"{option} = {value} is a fraction of the training steps and must be below 1 "
                f"(write 0.05 or 5% for 5 %, or an integer for a step count)."
            )
        return int(value * total)
    return int(value)


def plan_from_args(args: argparse.Namespace, num_training_steps: int, num_processes: int) -> SchedulePlan:
    total = int(num_training_steps) * max(1, int(num_processes))
    return SchedulePlan(
        total=total,
        warmup=resolve_steps(getattr(args, "lr_warmup_steps", 0), total, "--lr_warmup_steps"),
        decay=resolve_steps(getattr(args, "lr_decay_steps", 0), total, "--lr_decay_steps"),
        num_cycles=getattr(args, "lr_scheduler_num_cycles", 1) or 1,
        power=getattr(args, "lr_scheduler_power", 1.0),
        timescale=getattr(args, "lr_scheduler_timescale", None),
        min_lr_ratio=getattr(args, "lr_scheduler_min_lr_ratio", None),
    )
