"""Loss-weighting registry (`--weighting_scheme`) and `loss_weighting`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from ..registry import Registry
from .schemes import cosmap, sigma_sqrt, unit

WEIGHTINGS: Registry[Callable[[torch.Tensor], torch.Tensor | None]] = Registry("--weighting_scheme")
for _name in ("sigma_sqrt", "logit_normal", "mode", "cosmap", "none", "uniform"):
    WEIGHTINGS.register(_name, {"sigma_sqrt": sigma_sqrt, "cosmap": cosmap}.get(_name, unit))

__all__ = ["WEIGHTINGS", "loss_weighting", "validate_weighting"]


def validate_weighting(args: argparse.Namespace) -> None:
    WEIGHTINGS.get(args.weighting_scheme)


def loss_weighting(args: argparse.Namespace, sigmas: torch.Tensor) -> torch.Tensor | None:
    """(B,) per-sample weights for σ (B,), or None when every weight is 1."""
    return WEIGHTINGS.get(args.weighting_scheme)(sigmas)
