"""Optimizers from torch itself: kohya's default AdamW and SGDNesterov (momentum 0.9 unless given)."""

from __future__ import annotations

from .base import OptimizerEntry


def _torch_optim(name: str) -> type:
    """torch is imported when the class is needed, not when the registry is read (start-up stays torch-free)."""
    import torch

    return getattr(torch.optim, name)

ADAMW = OptimizerEntry(load_class=lambda: _torch_optim("AdamW"))
SGD_NESTEROV = OptimizerEntry(load_class=lambda: _torch_optim("SGD"), defaults={"momentum": 0.9}, fixed={"nesterov": True})
