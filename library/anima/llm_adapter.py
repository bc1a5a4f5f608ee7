"""Anima's `llm_adapter`: maps Qwen3 hidden states and T5 token ids to the DiT's cross-attention context.

Learned T5-id embeddings are the queries; each block self-attends over them, cross-attends to the Qwen3 states
and runs an MLP (spec anima-model.md §4.1). Parameter names are the checkpoint's (`llm_adapter.` + these) and the
block class is `LLMAdapterTransformerBlock`, the name LyCORIS and kohya's LoRA target.
"""

from __future__ import annotations

import torch
from torch import nn

from library.anima.config import LLMAdapterConfig
from library.anima.layers import QKNormProjections, RMSNorm, attention, merge_heads
from library.anima.rope import apply_rope, rope_1d

Rope = tuple[torch.Tensor, torch.Tensor]


class AdapterAttention(QKNormProjections):
    """Multi-head attention with per-head QK RMSNorm and RoPE on both queries and keys."""

    def __init__(self, model_dim: int, context_dim: int, num_heads: int) -> None:
        super().__init__(model_dim, context_dim, num_heads)
        self.o_proj = nn.Linear(model_dim, model_dim, bias=False)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, q_rope: Rope, k_rope: Rope, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        q, k, v = self.heads(x, context)
        return self.o_proj(merge_heads(attention(apply_rope(q, *q_rope), apply_rope(k, *k_rope), v, key_mask)))


class LLMAdapterTransformerBlock(nn.Module):
    """Pre-norm block: self-attention over targets, cross-attention to the source, GELU MLP (with biases)."""

    def __init__(self, config: LLMAdapterConfig) -> None:
        super().__init__()
        dim, hidden = config.model_dim, int(config.model_dim * config.mlp_ratio)
        self.norm_self_attn = RMSNorm(dim)
        self.self_attn = AdapterAttention(dim, dim, config.num_heads)
        self.norm_cross_attn = RMSNorm(dim)
        self.cross_attn = AdapterAttention(dim, config.source_dim, config.num_heads)
        self.norm_mlp = RMSNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(
        self,
        x: torch.Tensor,
        source: torch.Tensor,
        target_rope: Rope,
        source_rope: Rope,
        target_mask: torch.Tensor | None,
        source_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        xn = self.norm_self_attn(x)
        x = x + self.self_attn(xn, xn, target_rope, target_rope, target_mask)
        x = x + self.cross_attn(self.norm_cross_attn(x), source, target_rope, source_rope, source_mask)
        return x + self.mlp(self.norm_mlp(x))


class LLMAdapter(nn.Module):
    """Qwen3 states (B, Ls, source_dim) + T5 ids (B, Lt) -> context rows (B, Lt, target_dim).

    Masks are bool (B, L), True = attend, used as key masks (queries are never masked). Rows where
    `target_mask` is False are zeroed in the output, as kohya/diffusers do; padding the result to 512 rows is
    the caller's job (`build_context`). No RoPE buffers: angles are computed per call in fp32.
    """

    def __init__(self, config: LLMAdapterConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or LLMAdapterConfig()
        self.embed = nn.Embedding(config.vocab_size, config.target_dim)
        # Identity (no key) in the real model, where model_dim == target_dim.
        self.in_proj = (
            nn.Linear(config.target_dim, config.model_dim) if config.model_dim != config.target_dim else nn.Identity()
        )
        self.blocks = nn.ModuleList(LLMAdapterTransformerBlock(config) for _ in range(config.num_layers))
        self.out_proj = nn.Linear(config.model_dim, config.target_dim)
        self.norm = RMSNorm(config.target_dim)

    def forward(
        self,
        source_hidden: torch.Tensor,
        target_ids: torch.Tensor,
        target_mask: torch.Tensor | None = None,
        source_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.in_proj(self.embed(target_ids))
        source = source_hidden.to(x.dtype)
        target_rope = rope_1d(x.shape[1], self.config.head_dim, x.device)
        source_rope = rope_1d(source.shape[1], self.config.head_dim, x.device)
        for block in self.blocks:
            x = block(x, source, target_rope, source_rope, target_mask, source_mask)
        x = self.norm(self.out_proj(x))
        if target_mask is not None:
            x = x * target_mask.to(device=x.device, dtype=x.dtype).unsqueeze(-1)
        return x
