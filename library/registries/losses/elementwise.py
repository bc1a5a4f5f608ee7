"""The loss functions of `--loss_type`, elementwise (no reduction; the trainer applies masks and weights).

huber and smooth_l1 are kohya's pseudo-Huber forms with a per-sample threshold c:
huber = 2c(√(d² + c²) − c) (≈ d² near 0, ≈ 2c|d| far), smooth_l1 = 2(√(d² + c²) − c) (≈ d²/c, ≈ 2|d|).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _per_sample(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return c.to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))


def l2(pred: torch.Tensor, target: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    import torch.nn.functional as F
    return F.mse_loss(pred, target, reduction="none")


def l1(pred: torch.Tensor, target: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    import torch.nn.functional as F
    return F.l1_loss(pred, target, reduction="none")


def huber(pred: torch.Tensor, target: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    import torch
    assert c is not None
    c = _per_sample(c, pred)
    return 2 * c * (torch.sqrt((pred - target) ** 2 + c**2) - c)


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    import torch
    assert c is not None
    c = _per_sample(c, pred)
    return 2 * (torch.sqrt((pred - target) ** 2 + c**2) - c)
