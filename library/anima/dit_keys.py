"""Every tensor name and shape an Anima DiT file must hold, written out from the config, with no torch import.

The start-up check compares a file's header with this list before torch loads (`dit_header.py`); a test holds it
equal to the state dict of `AnimaDiT` built on the meta device, so the two cannot drift apart.
"""

from __future__ import annotations

from library.anima.config import AnimaConfig, LLMAdapterConfig

Shapes = dict[str, list[int]]


def _attention(prefix: str, dim: int, context_dim: int, head_dim: int, out_name: str) -> Shapes:
    shapes = {f"{prefix}q_proj.weight": [dim, dim], f"{prefix}k_proj.weight": [dim, context_dim],
              f"{prefix}v_proj.weight": [dim, context_dim], f"{prefix}q_norm.weight": [head_dim],
              f"{prefix}k_norm.weight": [head_dim]}
    return shapes | {f"{prefix}{out_name}.weight": [dim, dim]}


def _modulation(prefix: str, dim: int, lora_dim: int, chunks: int) -> Shapes:
    """AdaLN-LoRA: SiLU (`.0`, no weight), down to lora_dim (`.1`), up to chunks * dim (`.2`)."""
    return {f"{prefix}.1.weight": [lora_dim, dim], f"{prefix}.2.weight": [chunks * dim, lora_dim]}


def _block(index: int, config: AnimaConfig) -> Shapes:
    p, dim, lora = f"blocks.{index}.", config.model_channels, config.adaln_lora_dim
    hidden = int(dim * config.mlp_ratio)
    shapes = _attention(p + "self_attn.", dim, dim, config.head_dim, "output_proj")
    shapes |= _attention(p + "cross_attn.", dim, config.crossattn_emb_channels, config.head_dim, "output_proj")
    for part in ("self_attn", "cross_attn", "mlp"):
        shapes |= _modulation(f"{p}adaln_modulation_{part}", dim, lora, 3)
    return shapes | {f"{p}mlp.layer1.weight": [hidden, dim], f"{p}mlp.layer2.weight": [dim, hidden]}


def _adapter(config: LLMAdapterConfig) -> Shapes:
    p, dim, target = "llm_adapter.", config.model_dim, config.target_dim
    hidden = int(dim * config.mlp_ratio)
    shapes: Shapes = {p + "embed.weight": [config.vocab_size, target]}
    if dim != target:  # an Identity in the real model, where the two are equal
        shapes |= {p + "in_proj.weight": [dim, target], p + "in_proj.bias": [dim]}
    for index in range(config.num_layers):
        b = f"{p}blocks.{index}."
        for norm in ("norm_self_attn", "norm_cross_attn", "norm_mlp"):
            shapes[f"{b}{norm}.weight"] = [dim]
        shapes |= _attention(b + "self_attn.", dim, dim, config.head_dim, "o_proj")
        shapes |= _attention(b + "cross_attn.", dim, config.source_dim, config.head_dim, "o_proj")
        shapes |= {f"{b}mlp.0.weight": [hidden, dim], f"{b}mlp.0.bias": [hidden],
                   f"{b}mlp.2.weight": [dim, hidden], f"{b}mlp.2.bias": [dim]}
    return shapes | {p + "out_proj.weight": [target, dim], p + "out_proj.bias": [target], p + "norm.weight": [target]}


def expected_shapes(config: AnimaConfig) -> Shapes:
    """{un-prefixed key: shape} of the whole DiT (and its adapter when the config has one)."""
    dim, patch = config.model_channels, config.patch_spatial**2 * config.patch_temporal
    shapes: Shapes = {"x_embedder.proj.1.weight": [dim, (config.in_channels + 1) * patch],
                      "t_embedder.1.linear_1.weight": [dim, dim], "t_embedder.1.linear_2.weight": [3 * dim, dim],
                      "t_embedding_norm.weight": [dim]}
    for index in range(config.num_blocks):
        shapes |= _block(index, config)
    shapes |= {"final_layer.linear.weight": [patch * config.out_channels, dim]}
    shapes |= _modulation("final_layer.adaln_modulation", dim, config.adaln_lora_dim, 2)
    return shapes | (_adapter(config.adapter) if config.adapter is not None else {})
