"""The Anima DiT (Cosmos-Predict2 MiniTrainDIT + `llm_adapter`) and its config, inferred from checkpoint shapes.

Parameter names are the original checkpoint names without prefix, so a state dict loads 1:1 and LoRA module
paths match what ComfyUI expects. There are no buffers: RoPE is computed per call. The forward recipe is spec
anima-model.md §3 (ComfyUI/kohya/diffusers agree on it).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from library.anima.blocks import Block, FinalLayer
from library.anima.config import AnimaConfig
from library.anima.layers import RMSNorm
from library.anima.llm_adapter import LLMAdapter
from library.anima.rope import rope_3d


class BlockHooks(Protocol):
    """Called by `AnimaDiT.forward` around every block, outside checkpointing (block swap: block_swap.py)."""

    def before_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor: ...

    def after_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor: ...


class Patchify(nn.Module):
    """(B, C, T, H, W) -> (B, T/pt, H/p, W/p, C*pt*p*p), features channel-major (c, t, row, column)."""

    def __init__(self, spatial: int, temporal: int) -> None:
        super().__init__()
        self.spatial, self.temporal = spatial, temporal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        p, pt = self.spatial, self.temporal
        x = x.reshape(b, c, t // pt, pt, h // p, p, w // p, p)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).flatten(4)


class PatchEmbed(nn.Module):
    """`x_embedder`: `proj.0` patchifies (no parameters), `proj.1` is the Linear."""

    def __init__(self, config: AnimaConfig) -> None:
        super().__init__()
        features = (config.in_channels + 1) * config.patch_spatial**2 * config.patch_temporal
        linear = nn.Linear(features, config.model_channels, bias=False)
        self.proj = nn.Sequential(Patchify(config.patch_spatial, config.patch_temporal), linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Timesteps(nn.Module):
    """`t_embedder.0`: sinusoid [cos, sin] of sigma, computed in fp32 (cos first; frequencies 10000^(-k/half))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        k = torch.arange(half, device=t.device, dtype=torch.float32)
        angles = t.float()[:, None] * torch.exp(-math.log(10000.0) * k / half)[None]
        return torch.cat([angles.cos(), angles.sin()], dim=-1)


class TimestepEmbedding(nn.Module):
    """`t_embedder.1`: the AdaLN-LoRA term (B, 3*dim) shared by all blocks."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(dim, dim, bias=False)
        self.linear_2 = nn.Linear(dim, 3 * dim, bias=False)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(e)))


class AnimaDiT(nn.Module):
    """Anima denoiser: (B, 16, T, h, w) noisy latents + sigma + context (B, N, crossattn) -> velocity."""

    def __init__(self, config: AnimaConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or AnimaConfig()
        dim = config.model_channels
        self.x_embedder = PatchEmbed(config)
        self.t_embedder = nn.Sequential(Timesteps(dim), TimestepEmbedding(dim))
        self.t_embedding_norm = RMSNorm(dim)
        self.blocks = nn.ModuleList(
            Block(dim, config.crossattn_emb_channels, config.num_heads, config.mlp_ratio, config.adaln_lora_dim)
            for _ in range(config.num_blocks)
        )
        out_features = config.patch_spatial**2 * config.patch_temporal * config.out_channels
        self.final_layer = FinalLayer(dim, out_features, config.adaln_lora_dim)
        if config.adapter is not None:
            self.llm_adapter = LLMAdapter(config.adapter)
        self.gradient_checkpointing = False
        self.cpu_offload_checkpointing = False
        self.block_hooks: BlockHooks | None = None

    def enable_gradient_checkpointing(self, cpu_offload: bool = False) -> None:
        """Recompute each block in backward; with cpu_offload the block inputs wait on the CPU meanwhile."""
        self.gradient_checkpointing = True
        self.cpu_offload_checkpointing = cpu_offload

    def disable_gradient_checkpointing(self) -> None:
        self.gradient_checkpointing = False
        self.cpu_offload_checkpointing = False

    def _mask_channel(self, padding_mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """Channel 16: the padding mask (1 = padded) resized (nearest) to the latent, zeros when None (Anima)."""
        b, _, t, h, w = x.shape
        if padding_mask is None:
            return x.new_zeros(b, 1, t, h, w)
        mask = F.interpolate(padding_mask.to(x.dtype), size=(h, w), mode="nearest")
        return mask[:, :, None].expand(b, 1, t, h, w)

    def _run_block(self, block: Block, x: torch.Tensor, t_emb: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        """Run one block, checkpointed when enabled; with CPU offload its input and output stay on the CPU."""
        if not (self.gradient_checkpointing and torch.is_grad_enabled()):
            return block(x, t_emb, *rest)
        if not self.cpu_offload_checkpointing:
            return checkpoint(block, x, t_emb, *rest, use_reentrant=False)
        device = t_emb.device

        def offloaded(x_cpu: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
            return block(x_cpu.to(device, non_blocking=True), *args).to("cpu")

        return checkpoint(offloaded, x.to("cpu"), t_emb, *rest, use_reentrant=False)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, in, T, h, w); timesteps (B,) sigma in [0, 1]; context (B, N, crossattn) -> (B, out, T, h, w).

        Odd h or w is padded circularly to the patch size and the output cropped back (ComfyUI's behaviour).
        Activations run in the weight dtype; the sinusoid, RoPE and RMSNorms in fp32.
        """
        cfg = self.config
        b, _, frames, h, w = x.shape
        p, pt = cfg.patch_spatial, cfg.patch_temporal
        if frames % pt:
            raise ValueError(f"latent frames ({frames}) must be a multiple of patch_temporal ({pt})")
        x = F.pad(x, (0, (-w) % p, 0, (-h) % p, 0, 0), mode="circular") if h % p or w % p else x
        embed = getattr(self.x_embedder.proj[1], "weight", None)  # LyCORIS's algo=full moves it into its module
        dtype = (embed if embed is not None else self.t_embedding_norm.weight).dtype
        x = torch.cat([x, self._mask_channel(padding_mask, x)], dim=1).to(dtype)

        tokens = self.x_embedder(x)
        grid = tokens.shape[1:4]
        tokens = tokens.flatten(1, 3)
        e = self.t_embedder[0](timesteps.reshape(b)).to(dtype)
        adaln_lora = self.t_embedder[1](e)
        t_emb = self.t_embedding_norm(e)
        ratios = (cfg.rope_t_extrapolation_ratio, cfg.rope_h_extrapolation_ratio, cfg.rope_w_extrapolation_ratio)
        cos, sin = rope_3d(*grid, cfg.head_dim, ratios, device=x.device)
        context = context.to(dtype)
        for index, block in enumerate(self.blocks):
            if self.block_hooks is not None:
                tokens = self.block_hooks.before_block(index, tokens)
            tokens = self._run_block(block, tokens, t_emb, adaln_lora, context, cos, sin)
            if self.block_hooks is not None:
                tokens = self.block_hooks.after_block(index, tokens)

        out = self.final_layer(tokens.to(t_emb.device), t_emb, adaln_lora)
        # Output features are spatial-major, channel-minor: (row, column, t, channel).
        out = out.reshape(b, *grid, p, p, pt, cfg.out_channels).permute(0, 7, 1, 6, 2, 4, 3, 5)
        out = out.reshape(b, cfg.out_channels, grid[0] * pt, grid[1] * p, grid[2] * p)
        return out[..., :h, :w]
