"""Small building blocks shared by the DiT and the LLM adapter.

RMSNorm runs in fp32 because the residual stream of Cosmos/Anima carries large values that bf16/fp16 squares
overflow or round badly (kohya and ComfyUI normalise in fp32 too). Its fp32 intermediates are recomputed in
backward rather than kept: autograd would otherwise keep two fp32 copies of every normalised q and k (four times
the bf16 input; 4.4 GB of a 1024² step, bench/activation_memory.py), while the recompute is a few elementwise
ops on the kept bf16 input. Attention goes through `F.scaled_dot_product_attention` so every backend (flash,
memory-efficient, math) can be picked by torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

_SDPA_BACKENDS: list[SDPBackend] | None = None


def set_sdpa_backends(backends: list[SDPBackend] | None) -> None:
    """Restrict every attention call to these SDPA kernels (None: torch's choice). Process-wide and applied per
    call, so the recomputation of a checkpointed block uses the same kernel as its forward."""
    global _SDPA_BACKENDS
    _SDPA_BACKENDS = backends


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    context = sdpa_kernel(_SDPA_BACKENDS) if _SDPA_BACKENDS is not None else contextlib.nullcontext()
    with context:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class RMSNorm(nn.RMSNorm):
    """`nn.RMSNorm` (so generic code that looks for norms finds it) whose math runs in fp32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__(dim, eps=eps, elementwise_affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return recompute_in_backward(_rms_norm_fp32, x, self.weight, self.eps)


def _rms_norm_fp32(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (x32 * weight.float()).to(x.dtype)


def recompute_in_backward(function: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
    """`function(*args)`, keeping only its tensor arguments for backward and recomputing the rest there.

    For cheap elementwise stretches whose intermediates are larger than their inputs (fp32 copies, a norm's
    output kept for the modulation's gradient). The forward is the same computation, and the backward is
    autograd's own over the recomputed graph, so results are unchanged. Without autograd it is a plain call.
    """
    if not torch.is_grad_enabled() or not any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
        return function(*args)
    return checkpoint(function, *args, use_reentrant=False)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, L, H*D) -> (B, H, L, D), the layout SDPA wants."""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, D) -> (B, L, H*D)."""
    return x.transpose(1, 2).flatten(2)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA over (B, H, L, D) tensors with an optional bool key mask (B, Lk), True = attend.

    A batch row whose keys are all masked returns zeros, on every backend: torch >= 2.5's math kernel does
    that, but other kernels may give NaN, so such rows attend everywhere (finite) and are zeroed afterwards.
    This is what an empty caption (all-masked Qwen states) reaches in the adapter's cross-attention.
    """
    if key_mask is None:
        return _sdpa(q, k, v)
    key_mask = key_mask.to(device=q.device, dtype=torch.bool)
    has_keys = key_mask.any(dim=-1)
    mask = key_mask | ~has_keys[:, None]
    out = _sdpa(q, k, v, mask[:, None, None, :])
    return out * has_keys[:, None, None, None].to(out.dtype)


class QKNormProjections(nn.Module):
    """q/k/v projections (no bias) with per-head RMSNorm on q and k, shared by the DiT's and the adapter's attention;
    each subclass adds its output projection under the checkpoint's own name (`output_proj` / `o_proj`)."""

    def __init__(self, dim: int, context_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(context_dim, dim, bias=False)
        self.v_proj = nn.Linear(context_dim, dim, bias=False)
        self.q_norm = RMSNorm(dim // num_heads)
        self.k_norm = RMSNorm(dim // num_heads)

    def heads(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, H, L, D) queries and keys (normalised) and values."""
        q = self.q_norm(split_heads(self.q_proj(x), self.num_heads))
        k = self.k_norm(split_heads(self.k_proj(context), self.num_heads))
        return q, k, split_heads(self.v_proj(context), self.num_heads)
