"""Loss weightings of `--weighting_scheme` as functions of σ (SD3's, as kohya applies them to flow models).

`none`, `uniform`, `logit_normal` and `mode` weight every sample 1 (the last two only change *sampling*, and
only with --timestep_sampling sigma), so they return None and the trainer skips the multiply."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def unit(sigmas: torch.Tensor) -> torch.Tensor | None:
    return None


def sigma_sqrt(sigmas: torch.Tensor) -> torch.Tensor:
    """σ⁻²: emphasises low noise; σ = 0 gives inf, so samplers that can return 0 should not be paired with it."""
    return sigmas.float() ** -2.0


def cosmap(sigmas: torch.Tensor) -> torch.Tensor:
    """2 / (π(1 − 2σ + 2σ²)): the cosine-map weighting of SD3."""
    s = sigmas.float()
    return 2 / (math.pi * (1 - 2 * s + 2 * s**2))
