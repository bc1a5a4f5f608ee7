"""Loss registry (`--loss_type`) and `compute_loss`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import torch

from library.errors import ConfigError

from ..registry import Registry
from . import elementwise
from .huber_threshold import HUBER_SCHEDULES, huber_threshold

LossFn: TypeAlias = "Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]"  # a string: torch loads on use

LOSSES: Registry[LossFn] = Registry("--loss_type")
LOSSES.register("l2", elementwise.l2)
LOSSES.register("l1", elementwise.l1)
LOSSES.register("huber", elementwise.huber)
LOSSES.register("smooth_l1", elementwise.smooth_l1)

_NEEDS_THRESHOLD = {"huber", "smooth_l1"}

__all__ = ["HUBER_SCHEDULES", "LOSSES", "compute_loss", "validate_loss"]


def validate_loss(args: argparse.Namespace) -> None:
    name = LOSSES.canonical(args.loss_type)
    LOSSES.get(args.loss_type)
    if name not in _NEEDS_THRESHOLD:
        return
    schedule = HUBER_SCHEDULES.canonical(args.huber_schedule)
    HUBER_SCHEDULES.get(args.huber_schedule)
    if not args.huber_c > 0 or (schedule != "constant" and args.huber_c > 1):
        raise ConfigError(f"--huber_c must be in (0, 1] for --huber_schedule {schedule} (got {args.huber_c}).")
    if not args.huber_scale > 0:
        raise ConfigError(f"--huber_scale must be positive (got {args.huber_scale}).")


def compute_loss(
    args: argparse.Namespace, pred: torch.Tensor, target: torch.Tensor, sigmas: torch.Tensor
) -> torch.Tensor:
    """Elementwise loss (same shape as `pred`, no reduction). `sigmas` (B,) set the huber thresholds."""
    name = LOSSES.canonical(args.loss_type)
    c = huber_threshold(args, sigmas) if name in _NEEDS_THRESHOLD else None
    return LOSSES.get(args.loss_type)(pred.float(), target.float(), c)
