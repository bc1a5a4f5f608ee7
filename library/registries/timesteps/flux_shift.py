"""`flux_shift`: logit-normal σ shifted by an amount that grows with the image size (FLUX's rule).

μ is linear in the token count (h/2)(w/2) of the latent: 0.5 at 256 tokens, 1.15 at 4096;
σ' = e^μ / (e^μ + 1/σ − 1), i.e. a flow shift of e^μ."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from .logit_normal import sigmoid


def flux_mu(latent_hw: tuple[int, int]) -> float:
    tokens = (latent_hw[0] // 2) * (latent_hw[1] // 2)
    slope = (1.15 - 0.5) / (4096 - 256)
    return 0.5 + slope * (tokens - 256)


def flux_shift(
    args: argparse.Namespace, batch_size: int, latent_hw: tuple[int, int], generator: torch.Generator | None
) -> torch.Tensor:
    u = sigmoid(args, batch_size, latent_hw, generator)
    e_mu = math.exp(flux_mu(latent_hw))
    return e_mu / (e_mu + 1 / u - 1)
