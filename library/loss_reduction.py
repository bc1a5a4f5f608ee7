"""From an element-wise loss to the scalar that is back-propagated (kohya's order of operations)."""

from __future__ import annotations

from argparse import Namespace

import torch
import torch.nn.functional as F

from library.registries.losses import compute_loss


def reduce_loss(args: Namespace, pred: torch.Tensor, target: torch.Tensor, sigmas: torch.Tensor,
                weighting: torch.Tensor | None, loss_weights: torch.Tensor,
                alpha_masks: torch.Tensor | None) -> torch.Tensor:
    """Element-wise loss -> alpha mask -> mean per sample -> timestep weighting -> sample weights -> mean."""
    loss = compute_loss(args, pred.float(), target.float(), sigmas)
    if alpha_masks is not None:
        loss = loss * _mask_like(alpha_masks.to(loss.device, loss.dtype), loss)
    per_sample = loss.mean(dim=tuple(range(1, loss.dim())))
    if weighting is not None:
        per_sample = per_sample * weighting.to(per_sample.device, per_sample.dtype).view(-1)
    per_sample = per_sample * loss_weights.to(per_sample.device, per_sample.dtype)
    return per_sample.mean()


def _mask_like(masks: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """(B, H, W) pixel mask -> the loss's spatial size, broadcast over channels (and frames)."""
    size = loss.shape[-2:]
    resized = F.interpolate(masks.unsqueeze(1), size=size, mode="area")
    return resized.view(loss.shape[0], *([1] * (loss.dim() - 3)), *size)
