"""Training σ samplers (`--timestep_sampling`); anima-model.md §8.3."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import torch

from library.errors import ConfigError

from ..registry import Registry
from .flux_shift import flux_shift
from .logit_normal import logit_normal, sigmoid
from .shift import shift
from .sigma import sigma
from .uniform import uniform
from .uniform_shift import uniform_shift

Sampler: TypeAlias = "Callable[[argparse.Namespace, int, tuple[int, int], torch.Generator | None], torch.Tensor]"  # a string: torch loads on use

TIMESTEP_SAMPLERS: Registry[Sampler] = Registry("--timestep_sampling")
TIMESTEP_SAMPLERS.register("sigmoid", sigmoid)
TIMESTEP_SAMPLERS.register("uniform", uniform)
TIMESTEP_SAMPLERS.register("shift", shift)
TIMESTEP_SAMPLERS.register("flux_shift", flux_shift)
TIMESTEP_SAMPLERS.register("sigma", sigma)
TIMESTEP_SAMPLERS.register("logit_normal", logit_normal)
TIMESTEP_SAMPLERS.register("uniform_shift", uniform_shift)

__all__ = ["TIMESTEP_SAMPLERS", "sample_sigmas", "validate_timesteps"]


def validate_timesteps(args: argparse.Namespace) -> None:
    TIMESTEP_SAMPLERS.get(args.timestep_sampling)
    for option in ("sigmoid_scale", "discrete_flow_shift", "logit_std"):
        value = getattr(args, option, None)
        if value is not None and not value > 0:
            raise ConfigError(f"--{option} must be positive (got {value}).")


def sample_sigmas(
    args: argparse.Namespace,
    batch_size: int,
    latent_hw: tuple[int, int],
    device: torch.device | str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B,) float32 noise levels σ in [0, 1] (1 = pure noise) on `device`. `latent_hw` is the latent (h, w), used by
    flux_shift. Drawn on the generator's device (CPU without one), so a seeded CPU generator is reproducible."""
    import torch
    sampler = TIMESTEP_SAMPLERS.get(args.timestep_sampling)
    return sampler(args, batch_size, latent_hw, generator).to(device=device, dtype=torch.float32)
