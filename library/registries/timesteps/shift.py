"""`shift`: logit-normal σ pushed towards noise by the flow shift k: σ' = kσ / (1 + (k−1)σ).

k = --discrete_flow_shift (default 1.0 = no shift; ComfyUI *samples* Anima with 3.0)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from .logit_normal import sigmoid


def apply_shift(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    return sigmas * shift / (1 + (shift - 1) * sigmas)


def shift(
    args: argparse.Namespace, batch_size: int, latent_hw: tuple[int, int], generator: torch.Generator | None
) -> torch.Tensor:
    return apply_shift(sigmoid(args, batch_size, latent_hw, generator), args.discrete_flow_shift)
