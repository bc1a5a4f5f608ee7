"""`uniform_shift`: σ ~ U(0, 1) pushed towards noise by the flow shift k: σ' = kσ / (1 + (k−1)σ).

The seed project's `anima_timestep_sampling = "uniform"` (its `anima_flow_shift` applies to both of its samplers);
k = --discrete_flow_shift."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from .shift import apply_shift
from .uniform import uniform


def uniform_shift(
    args: argparse.Namespace, batch_size: int, latent_hw: tuple[int, int], generator: torch.Generator | None
) -> torch.Tensor:
    return apply_shift(uniform(args, batch_size, latent_hw, generator), args.discrete_flow_shift)
