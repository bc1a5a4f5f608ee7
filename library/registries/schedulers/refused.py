"""transformers' schedules that this trainer refuses by name, each with the reason and what to use instead, so a
kohya file that names one stops at start-up with a sentence (kohya itself fails at the first step)."""

from __future__ import annotations

from typing import Any, NoReturn

from library.errors import ConfigError

from .base import SchedulerEntry

_NEEDS_A_METRIC = ("it changes the learning rate from a metric passed to every step() (it lowers it when the loss "
                   "stops improving), and a schedule here, as in kohya, is stepped by the step count alone; the "
                   "per-step training loss, drawn at random noise levels, is too noisy to judge a plateau by. Use "
                   "cosine_with_min_lr or warmup_stable_decay (a decay to --lr_scheduler_min_lr_ratio), or a "
                   "step-count scheduler class with --lr_scheduler_type")
REASONS = {"reduce_lr_on_plateau": _NEEDS_A_METRIC, "greedy": _NEEDS_A_METRIC}


def refused_entry(name: str) -> SchedulerEntry:
    """An entry whose start-up check (and build, should it be reached) raises the reason."""

    def refuse(*_: Any) -> NoReturn:
        raise ConfigError(f"--lr_scheduler {name} is not supported: {REASONS[name]}.")

    return SchedulerEntry(build=refuse, takes_warmup=False, check=refuse)
