"""`sigma`: kohya's FLUX default. An index into a 1000-step flow-matching schedule (shifted by
--discrete_flow_shift) is drawn from the --weighting_scheme density: logit_normal (--logit_mean, --logit_std),
mode (--mode_scale), otherwise uniform. σ_i = shift((1000 − i) / 1000), so σ ∈ [0.001, 1]."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from .logit_normal import standard_normal
from .shift import apply_shift

NUM_TRAIN_TIMESTEPS = 1000


def density_sample(args: argparse.Namespace, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
    """u in [0, 1) from the SD3 timestep densities."""
    import torch
    scheme = getattr(args, "weighting_scheme", "uniform")
    if scheme == "logit_normal":
        return torch.sigmoid(args.logit_mean + args.logit_std * standard_normal(batch_size, generator))
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(batch_size, generator=generator, device=device, dtype=torch.float32)
    if scheme == "mode":
        u = 1 - u - args.mode_scale * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)
    return u


def sigma(
    args: argparse.Namespace, batch_size: int, latent_hw: tuple[int, int], generator: torch.Generator | None
) -> torch.Tensor:
    u = density_sample(args, batch_size, generator)
    indices = (u * NUM_TRAIN_TIMESTEPS).long().clamp(0, NUM_TRAIN_TIMESTEPS - 1)
    base = (NUM_TRAIN_TIMESTEPS - indices).float() / NUM_TRAIN_TIMESTEPS
    return apply_shift(base, args.discrete_flow_shift)
