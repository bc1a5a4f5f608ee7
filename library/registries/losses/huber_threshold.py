"""The per-sample Huber threshold c(σ) from --huber_schedule, --huber_c and --huber_scale.

kohya's schedules are written for timesteps t = 1000σ; on flow matching they become:
- constant: c · scale
- exponential: c^σ · scale (scale at σ=0, c·scale at pure noise)
- snr: kohya's (1 − c)/(1 + r)² + c with r the noise-to-signal ratio. For x_σ = (1−σ)x₀ + σε, r = σ/(1−σ), so
  c(σ) = (1 − c)(1 − σ)² + c (no scale, as in kohya). kohya itself raises for snr on flow models; we define it
  because snr is kohya's default schedule, so `--loss_type huber` alone works.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from ..registry import Registry


def _constant(args: argparse.Namespace, sigmas: torch.Tensor) -> torch.Tensor:
    import torch
    return torch.full_like(sigmas, args.huber_c * args.huber_scale)


def _exponential(args: argparse.Namespace, sigmas: torch.Tensor) -> torch.Tensor:
    import torch
    return torch.pow(torch.full_like(sigmas, args.huber_c), sigmas) * args.huber_scale


def _snr(args: argparse.Namespace, sigmas: torch.Tensor) -> torch.Tensor:
    return (1 - args.huber_c) * (1 - sigmas) ** 2 + args.huber_c


HUBER_SCHEDULES: Registry[Callable[[argparse.Namespace, torch.Tensor], torch.Tensor]] = Registry("--huber_schedule")
HUBER_SCHEDULES.register("constant", _constant)
HUBER_SCHEDULES.register("exponential", _exponential)
HUBER_SCHEDULES.register("snr", _snr)


def huber_threshold(args: argparse.Namespace, sigmas: torch.Tensor) -> torch.Tensor:
    """(B,) thresholds for σ (B,)."""
    return HUBER_SCHEDULES.get(args.huber_schedule)(args, sigmas.float())
