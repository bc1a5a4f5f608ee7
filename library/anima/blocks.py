"""The DiT's transformer block (`Block`) and its parts, named as in the checkpoint (spec anima-model.md §2.3).

Each of the three sub-layers (self-attention, cross-attention, MLP) is modulated by AdaLN-LoRA:
(shift, scale, gate) = adaln_modulation(SiLU(t_emb)) + lora, where `lora` comes from `t_embedder.1` and is
shared by every block. Attention is unmasked; RoPE applies to self-attention only (spec §3 step 5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from library.anima.layers import QKNormProjections, attention, merge_heads, recompute_in_backward
from library.anima.rope import apply_rope


class Attention(QKNormProjections):
    """Multi-head attention with per-head QK RMSNorm; RoPE on q and k when given."""

    def __init__(self, dim: int, context_dim: int, num_heads: int) -> None:
        super().__init__(dim, context_dim, num_heads)
        self.output_proj = nn.Linear(dim, dim, bias=False)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        q, k, v = self.heads(x, context)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return self.output_proj(merge_heads(attention(q, k, v)))


class FeedForward(nn.Module):
    """Linear -> exact GELU -> Linear, no biases (Cosmos' GPT2FeedForward names)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layer1 = nn.Linear(dim, hidden, bias=False)
        self.layer2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.gelu(self.layer1(x)))


def adaln_modulation(dim: int, lora_dim: int, chunks: int) -> nn.Sequential:
    """SiLU -> down (dim -> lora_dim) -> up (lora_dim -> chunks*dim); keys `.1.weight` / `.2.weight`."""
    return nn.Sequential(nn.SiLU(), nn.Linear(dim, lora_dim, bias=False), nn.Linear(lora_dim, chunks * dim, bias=False))


def layer_norm(dim: int) -> nn.LayerNorm:
    """Parameter-free LayerNorm (no keys in the checkpoint)."""
    return nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift, with (B, D) modulation broadcast over the tokens of x (B, L, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


def _norm_modulate(norm: nn.LayerNorm, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return modulate(norm(x), shift, scale)


def norm_modulate(norm: nn.LayerNorm, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """modulate(norm(x)), with only x and the modulation kept for backward (the norm is recomputed there).

    Kept otherwise: the norm's output (for the gradient of `scale`) and, under CUDA autocast, where LayerNorm runs
    in fp32, an fp32 copy of x and the fp32 output: 4.2 GB of a 1024² step. The result is not cast: a bf16 copy
    would save the per-Linear casts too, but would sum the Linears' input gradients in bf16 instead of fp32.
    """
    return recompute_in_backward(_norm_modulate, norm, x, shift, scale)


class Block(nn.Module):
    """One DiT block: AdaLN-modulated self-attention (RoPE), cross-attention to the context, and MLP."""

    def __init__(self, dim: int, context_dim: int, num_heads: int, mlp_ratio: float, adaln_lora_dim: int) -> None:
        super().__init__()
        self.layer_norm_self_attn = layer_norm(dim)
        self.self_attn = Attention(dim, dim, num_heads)
        self.adaln_modulation_self_attn = adaln_modulation(dim, adaln_lora_dim, 3)
        self.layer_norm_cross_attn = layer_norm(dim)
        self.cross_attn = Attention(dim, context_dim, num_heads)
        self.adaln_modulation_cross_attn = adaln_modulation(dim, adaln_lora_dim, 3)
        self.layer_norm_mlp = layer_norm(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))
        self.adaln_modulation_mlp = adaln_modulation(dim, adaln_lora_dim, 3)

    def forward(
        self,
        x: torch.Tensor,
        t_emb: torch.Tensor,
        adaln_lora: torch.Tensor,
        context: torch.Tensor,
        rope_cos: torch.Tensor,
        rope_sin: torch.Tensor,
    ) -> torch.Tensor:
        """x (B, L, D); t_emb (B, D); adaln_lora (B, 3D); context (B, N, context_dim); rope (L, head_dim)."""
        shift, scale, gate = (self.adaln_modulation_self_attn(t_emb) + adaln_lora).chunk(3, dim=-1)
        y = norm_modulate(self.layer_norm_self_attn, x, shift, scale)
        x = x + gate[:, None] * self.self_attn(y, y, (rope_cos, rope_sin))

        shift, scale, gate = (self.adaln_modulation_cross_attn(t_emb) + adaln_lora).chunk(3, dim=-1)
        y = norm_modulate(self.layer_norm_cross_attn, x, shift, scale)
        x = x + gate[:, None] * self.cross_attn(y, context)

        shift, scale, gate = (self.adaln_modulation_mlp(t_emb) + adaln_lora).chunk(3, dim=-1)
        y = norm_modulate(self.layer_norm_mlp, x, shift, scale)
        return x + gate[:, None] * self.mlp(y)


class FinalLayer(nn.Module):
    """AdaLN (shift, scale) + LayerNorm + Linear to the per-patch output features."""

    def __init__(self, dim: int, out_features: int, adaln_lora_dim: int) -> None:
        super().__init__()
        self.layer_norm = layer_norm(dim)
        self.linear = nn.Linear(dim, out_features, bias=False)
        self.adaln_modulation = adaln_modulation(dim, adaln_lora_dim, 2)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor, adaln_lora: torch.Tensor) -> torch.Tensor:
        dim = x.shape[-1]
        shift, scale = (self.adaln_modulation(t_emb) + adaln_lora[:, : 2 * dim]).chunk(2, dim=-1)
        return self.linear(norm_modulate(self.layer_norm, x, shift, scale))
