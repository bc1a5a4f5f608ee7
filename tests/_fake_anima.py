"""A small stand-in for the Anima DiT with the real module paths and block class names.

Only the names, classes and kinds of modules matter to the networks: Linears at the checkpoint paths,
RMSNorms with a weight, affine-less LayerNorms, blocks of class `Block` / `LLMAdapterTransformerBlock`.
The forward touches every module so that training reaches every adapter.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

DIM, CTX, SRC, HEADS, HIDDEN, IN, OUT, ADA = 32, 16, 24, 2, 64, 12, 8, 8


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Attention(nn.Module):
    def __init__(self, dim: int, context_dim: int, out_name: str) -> None:
        super().__init__()
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(context_dim, dim, bias=False)
        self.v_proj = nn.Linear(context_dim, dim, bias=False)
        self.out_name = out_name
        self.add_module(out_name, nn.Linear(dim, dim, bias=False))
        self.q_norm = RMSNorm(dim // HEADS)
        self.k_norm = RMSNorm(dim // HEADS)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = self.q_norm(self.q_proj(x).unflatten(-1, (HEADS, -1))).transpose(1, 2)
        k = self.k_norm(self.k_proj(context).unflatten(-1, (HEADS, -1))).transpose(1, 2)
        v = self.v_proj(context).unflatten(-1, (HEADS, -1)).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return getattr(self, self.out_name)(out)


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Linear(DIM, HIDDEN, bias=False)
        self.layer2 = nn.Linear(HIDDEN, DIM, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.gelu(self.layer1(x)))


def modulation() -> nn.Sequential:
    return nn.Sequential(nn.SiLU(), nn.Linear(DIM, ADA, bias=False), nn.Linear(ADA, 2 * DIM, bias=False))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.self_attn = Attention(DIM, DIM, "output_proj")
        self.cross_attn = Attention(DIM, CTX, "output_proj")
        self.mlp = Mlp()
        for name in ("self_attn", "cross_attn", "mlp"):
            self.add_module(f"adaln_modulation_{name}", modulation())
            self.add_module(f"layer_norm_{name}", nn.LayerNorm(DIM, elementwise_affine=False))

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for name in ("self_attn", "cross_attn", "mlp"):
            shift, scale = getattr(self, f"adaln_modulation_{name}")(t_emb).unsqueeze(1).chunk(2, dim=-1)
            h = getattr(self, f"layer_norm_{name}")(x) * (1 + scale) + shift
            if name == "self_attn":
                h = self.self_attn(h, h)
            elif name == "cross_attn":
                h = self.cross_attn(h, context)
            else:
                h = self.mlp(h)
            x = x + h
        return x


class LLMAdapterTransformerBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm_self_attn = RMSNorm(CTX)
        self.self_attn = Attention(CTX, CTX, "o_proj")
        self.norm_cross_attn = RMSNorm(CTX)
        self.cross_attn = Attention(CTX, SRC, "o_proj")
        self.norm_mlp = RMSNorm(CTX)
        self.mlp = nn.Sequential(nn.Linear(CTX, 4 * CTX), nn.GELU(), nn.Linear(4 * CTX, CTX))

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        h = self.norm_self_attn(x)
        x = x + self.self_attn(h, h)
        x = x + self.cross_attn(self.norm_cross_attn(x), source)
        return x + self.mlp(self.norm_mlp(x))


class LLMAdapter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(LLMAdapterTransformerBlock() for _ in range(2))
        self.out_proj = nn.Linear(CTX, CTX)
        self.norm = RMSNorm(CTX)

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            target = block(target, source)
        return self.norm(self.out_proj(target))


class TimestepEmbedding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(DIM, DIM, bias=False)
        self.linear_2 = nn.Linear(DIM, DIM, bias=False)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(e)))


class FinalLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(DIM, elementwise_affine=False)
        self.linear = nn.Linear(DIM, OUT, bias=False)
        self.adaln_modulation = modulation()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaln_modulation(t_emb).unsqueeze(1).chunk(2, dim=-1)
        return self.linear(self.layer_norm(x) * (1 + scale) + shift)


class FakeAnima(nn.Module):
    """x (B, L, IN), timesteps (B,), target (B, Lt, CTX), source (B, Ls, SRC) -> (B, L, OUT)."""

    def __init__(self, checkpointing: bool = False) -> None:
        super().__init__()
        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Sequential(nn.Identity(), nn.Linear(IN, DIM, bias=False))
        self.t_embedder = nn.Sequential(nn.Identity(), TimestepEmbedding())
        self.t_embedding_norm = RMSNorm(DIM)
        self.blocks = nn.ModuleList(Block() for _ in range(2))
        self.final_layer = FinalLayer()
        self.llm_adapter = LLMAdapter()
        self.checkpointing = checkpointing

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, target: torch.Tensor, source: torch.Tensor
    ) -> torch.Tensor:
        context = self.llm_adapter(target, source)
        freqs = torch.arange(DIM // 2, dtype=x.dtype) / (DIM // 2)
        angles = timesteps[:, None] * 1000 * torch.exp(-4 * freqs)[None]
        e = torch.cat([angles.cos(), angles.sin()], dim=-1)
        t_emb = self.t_embedding_norm(self.t_embedder(e))
        h = self.x_embedder.proj(x)
        for block in self.blocks:
            h = (
                checkpoint(block, h, t_emb, context, use_reentrant=False)
                if self.checkpointing
                else block(h, t_emb, context)
            )
        return self.final_layer(h, t_emb)


def one_thread() -> Iterator[None]:
    """Run a test module on one intra-op thread: on tensors this small, threads only fight over the shared
    CPU cores (measured: 4 s on one thread against 60 s with the default count under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(seed: int = 0, checkpointing: bool = False) -> FakeAnima:
    torch.manual_seed(seed)
    return FakeAnima(checkpointing)


def make_batch(seed: int = 1, batch: int = 2) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, 6, IN, generator=gen),
        torch.rand(batch, generator=gen),
        torch.randn(batch, 5, CTX, generator=gen),
        torch.randn(batch, 7, SRC, generator=gen),
    )


# the Linears decision 6 targets in this stand-in (every block, both adapter blocks)
DEFAULT_LINEARS = (
    [
        f"blocks.{n}.{attn}.{proj}"
        for n in range(2)
        for attn in ("self_attn", "cross_attn")
        for proj in ("q_proj", "k_proj", "v_proj", "output_proj")
    ]
    + [f"blocks.{n}.mlp.layer{i}" for n in range(2) for i in (1, 2)]
    + [
        f"llm_adapter.blocks.{n}.{attn}.{proj}"
        for n in range(2)
        for attn in ("self_attn", "cross_attn")
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj")
    ]
    + [f"llm_adapter.blocks.{n}.mlp.{i}" for n in range(2) for i in (0, 2)]
)
