"""σ ~ U(0, 1): every noise level equally often."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def uniform(
    args: argparse.Namespace, batch_size: int, latent_hw: tuple[int, int], generator: torch.Generator | None
) -> torch.Tensor:
    import torch
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(batch_size, generator=generator, device=device, dtype=torch.float32)
