"""Optimizers from torch itself: kohya's default AdamW and SGDNesterov (momentum 0.9 unless given)."""

from __future__ import annotations

from typing import Any

from .base import OptimizerEntry


def _torch_optim(name: str) -> type:
    """torch is imported when the class is needed, not when the registry is read (start-up stays torch-free)."""
    import torch

    return getattr(torch.optim, name)


def _fused_on_cuda(lr: float | None, kwargs: dict[str, Any], groups: list) -> tuple[float | None, dict[str, Any], list]:
    """torch's fused AdamW (one kernel per step for all parameters, instead of several per tensor) when the run
    trains on a CUDA device and `--optimizer_args` names no implementation: the same update, fewer launches.
    `fused=False` (or `foreach=True`) in `--optimizer_args` keeps torch's own choice."""
    import torch

    if torch.cuda.is_available() and not {"fused", "foreach", "capturable", "differentiable"} & set(kwargs):
        kwargs = {**kwargs, "fused": True}
    return lr, kwargs, groups


ADAMW = OptimizerEntry(load_class=lambda: _torch_optim("AdamW"), prepare=_fused_on_cuda)
SGD_NESTEROV = OptimizerEntry(load_class=lambda: _torch_optim("SGD"), defaults={"momentum": 0.9}, fixed={"nesterov": True})
