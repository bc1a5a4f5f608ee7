"""Rectified flow for Anima (spec anima-model.md section 8.1).

x_sigma = (1 - sigma) * x0 + sigma * noise, and the model predicts the velocity noise - x0.
The model's timestep input is sigma itself in [0, 1] (not x1000).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from library.sample_draws import randn_per_sample


def broadcast_sigmas(sigmas: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) matching `like`'s rank, in `like`'s dtype."""
    return sigmas.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def noisy_input(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    s = broadcast_sigmas(sigmas, latents)
    return (1.0 - s) * latents + s * noise


def velocity_target(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - latents


def denoised_from_velocity(x: torch.Tensor, velocity: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """x0 estimate from a velocity prediction (ComfyUI's CONST.calculate_denoised)."""
    return x - broadcast_sigmas(sigmas, x) * velocity


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Time shift s*u / (1 + (s-1)*u); shift 3.0 is ComfyUI's inference default for Anima."""
    return shift * sigmas / (1.0 + (shift - 1.0) * sigmas)


def offset_noise(noise: torch.Tensor, offset: float | None, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """The seed project's `anima_noise_offset`: noise + offset * n, n ~ N(0, 1) per sample and channel, the same at
    every pixel; the offset noise is both the model input's noise and the velocity target's. Drawn from each sample's
    generator after its noise, so a resumed run draws the same."""
    if not offset:
        return noise
    shift = randn_per_sample((noise.shape[0], noise.shape[1]), generators, noise.device, noise.dtype)
    return noise + offset * shift.view(*shift.shape, *([1] * (noise.dim() - 2)))
