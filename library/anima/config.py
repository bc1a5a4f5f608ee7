"""The sizes of an Anima DiT and its `llm_adapter`, inferred from checkpoint shapes, with no torch import.

The start-up checks read a DiT file's header and compare every tensor's shape with these sizes before torch loads
(`dit_header.py`), so this module and what it imports must stay free of torch; `model.py` builds the modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LLMAdapterConfig:
    """Adapter sizes; the real model's are the defaults (all 1024 wide, 6 layers, 16 heads of 64)."""

    source_dim: int = 1024
    target_dim: int = 1024
    model_dim: int = 1024
    num_layers: int = 6
    num_heads: int = 16
    mlp_ratio: float = 4.0
    vocab_size: int = 32128

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads


ShapeLike = Any  # a tensor, a torch.Size or a list of ints: anything with `.shape` or iterable


def _shape(value: ShapeLike) -> tuple[int, ...]:
    return tuple(getattr(value, "shape", value))


def _count_blocks(keys: Sequence[str], prefix: str) -> int:
    """Highest `<prefix>N.` index + 1 (so a file with blocks 0..35 gives 36)."""
    indices = [int(key[len(prefix) :].split(".", 1)[0]) for key in keys if key.startswith(prefix)]
    if not indices:
        raise ValueError(f"no '{prefix}N.*' keys")
    return max(indices) + 1


@dataclass
class AnimaConfig:
    """DiT sizes. Defaults are the real 2B model; `from_state_dict` reads every size from shapes."""

    in_channels: int = 16
    out_channels: int = 16
    model_channels: int = 2048
    num_blocks: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    adaln_lora_dim: int = 256
    crossattn_emb_channels: int = 1024
    patch_spatial: int = 2
    patch_temporal: int = 1
    rope_h_extrapolation_ratio: float = 4.0
    rope_w_extrapolation_ratio: float = 4.0
    rope_t_extrapolation_ratio: float = 1.0
    adapter: LLMAdapterConfig | None = field(default_factory=LLMAdapterConfig)

    @property
    def head_dim(self) -> int:
        return self.model_channels // self.num_heads

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, ShapeLike]) -> AnimaConfig:
        """Infer the config from un-prefixed keys mapped to tensors or shapes (a header is enough).

        Patch sizes (2 spatial, 1 temporal) and RoPE ratios are Anima's constants, as in ComfyUI; everything
        else comes from shapes, so the 2B model, 36-/20-block variants and tiny test files share one path.
        Raises KeyError naming the first key that a DiT must have.
        """
        config = cls(adapter=None)
        patch = config.patch_spatial**2 * config.patch_temporal
        width, in_features = _shape(sd["x_embedder.proj.1.weight"])
        head_dim = _shape(sd["blocks.0.self_attn.q_norm.weight"])[0]
        config.model_channels = width
        config.in_channels = in_features // patch - 1  # minus the padding-mask channel
        config.out_channels = _shape(sd["final_layer.linear.weight"])[0] // patch
        config.num_blocks = _count_blocks(list(sd), "blocks.")
        config.num_heads = width // head_dim
        config.mlp_ratio = _shape(sd["blocks.0.mlp.layer1.weight"])[0] / width
        config.adaln_lora_dim = _shape(sd["blocks.0.adaln_modulation_self_attn.1.weight"])[0]
        config.crossattn_emb_channels = _shape(sd["blocks.0.cross_attn.k_proj.weight"])[1]
        if any(key.startswith("llm_adapter.") for key in sd):
            config.adapter = _adapter_config(sd)
        return config


def _adapter_config(sd: Mapping[str, ShapeLike]) -> LLMAdapterConfig:
    """Adapter sizes from shapes, as diffusers' Anima converter reads them."""
    p = "llm_adapter."
    vocab, target_dim = _shape(sd[p + "embed.weight"])
    model_dim = _shape(sd[p + "blocks.0.self_attn.q_proj.weight"])[0]
    return LLMAdapterConfig(
        source_dim=_shape(sd[p + "blocks.0.cross_attn.k_proj.weight"])[1],
        target_dim=target_dim,
        model_dim=model_dim,
        num_layers=_count_blocks(list(sd), p + "blocks."),
        num_heads=model_dim // _shape(sd[p + "blocks.0.self_attn.q_norm.weight"])[0],
        mlp_ratio=_shape(sd[p + "blocks.0.mlp.0.weight"])[0] / model_dim,
        vocab_size=vocab,
    )
