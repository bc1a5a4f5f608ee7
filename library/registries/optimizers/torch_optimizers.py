"""Optimizers from torch itself: kohya's default AdamW and SGDNesterov (momentum 0.9 unless given)."""

from __future__ import annotations

import torch

from .base import OptimizerEntry

ADAMW = OptimizerEntry(load_class=lambda: torch.optim.AdamW)
SGD_NESTEROV = OptimizerEntry(load_class=lambda: torch.optim.SGD, defaults={"momentum": 0.9}, fixed={"nesterov": True})
