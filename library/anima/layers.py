"""Small building blocks shared by the DiT and the LLM adapter.

RMSNorm runs in fp32 because the residual stream of Cosmos/Anima carries large values that bf16/fp16 squares
overflow or round badly (kohya and ComfyUI normalise in fp32 too). Attention goes through
`F.scaled_dot_product_attention` so every backend (flash, memory-efficient, math) can be picked by torch.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

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
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (x32 * self.weight.float()).to(x.dtype)


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
