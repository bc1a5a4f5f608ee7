"""Logit-normal σ: `sigmoid` (kohya's Anima default, σ = sigmoid(s·n)) and `logit_normal` (σ = sigmoid(m + d·n),
SD3's parametrisation via --logit_mean/--logit_std). The model author trains with scale 1 and no shift."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def standard_normal(batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
    """n ~ N(0, 1) drawn on the generator's device (CPU when none), float32."""
    import torch
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(batch_size, generator=generator, device=device, dtype=torch.float32)


def sigmoid(
    args: argparse.Namespace, batch_size: int, latent_hw: tuple[int, int], generator: torch.Generator | None
) -> torch.Tensor:
    import torch
    return torch.sigmoid(args.sigmoid_scale * standard_normal(batch_size, generator))


def logit_normal(
    args: argparse.Namespace, batch_size: int, latent_hw: tuple[int, int], generator: torch.Generator | None
) -> torch.Tensor:
    import torch
    return torch.sigmoid(args.logit_mean + args.logit_std * standard_normal(batch_size, generator))
