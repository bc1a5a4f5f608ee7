"""Rectified flow for Anima (spec anima-model.md section 8.1).

x_sigma = (1 - sigma) * x0 + sigma * noise, and the model predicts the velocity noise - x0.
The model's timestep input is sigma itself in [0, 1] (not x1000).
"""

from __future__ import annotations

import torch


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
