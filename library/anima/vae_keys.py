"""Qwen-Image / Wan 2.1 VAE tensor names: original (Wan/ComfyUI) <-> diffusers, and the config from shapes.

The released `qwen_image_vae.safetensors` uses the original Wan names (ComfyUI needs them); diffusers'
`AutoencoderKLQwenImage` uses its own. The facts are those of diffusers'
`single_file_utils.convert_wan_vae_to_diffusers`, written for any depth: that converter hard-codes the real
layout (3 decoder resnets per level), and a tiny VAE with another `num_res_blocks` must rename the same way.
Everything here works on names and shapes only, so it also serves header-only file checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Shapes = Mapping[str, tuple[int, ...]]

# Leaf names inside a residual block: diffusers -> original.
_RESIDUAL = {
    "norm1": "residual.0",
    "conv1": "residual.2",
    "norm2": "residual.3",
    "conv2": "residual.6",
    "conv_shortcut": "shortcut",
}
_TOP = {"quant_conv": "conv1", "post_quant_conv": "conv2"}
_SIDE = {"conv_in": "conv1", "norm_out": "head.0", "conv_out": "head.2"}
_MIDDLE = {"resnets.0": "middle.0", "attentions.0": "middle.1", "resnets.1": "middle.2"}

ORIGINAL_MARKER = "decoder.middle.0.residual.0.gamma"  # ComfyUI's Wan 2.1 VAE detection key
DIFFUSERS_MARKER = "decoder.mid_block.resnets.0.norm1.gamma"


@dataclass(frozen=True)
class WanVAELayout:
    """The shape-defining part of an `AutoencoderKLQwenImage` config."""

    base_dim: int
    z_dim: int
    dim_mult: tuple[int, ...]
    num_res_blocks: int
    temperal_downsample: tuple[bool, ...]

    def diffusers_kwargs(self) -> dict:
        return {
            "base_dim": self.base_dim,
            "z_dim": self.z_dim,
            "dim_mult": list(self.dim_mult),
            "num_res_blocks": self.num_res_blocks,
            "attn_scales": [],
            "temperal_downsample": list(self.temperal_downsample),
        }


def _residual_leaf(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_RESIDUAL.get(head, head)}.{tail}"


def diffusers_to_original_name(key: str, num_res_blocks: int) -> str:
    """One diffusers VAE key -> its original Wan name (`num_res_blocks` fixes the flat decoder index)."""
    first, _, rest = key.partition(".")
    if first in _TOP:
        return f"{_TOP[first]}.{rest}"
    side, name = first, rest
    part, _, rest = name.partition(".")
    if part in _SIDE:
        return f"{side}.{_SIDE[part]}.{rest}"
    if part == "mid_block":
        m = re.match(r"(resnets\.\d+|attentions\.\d+)\.(.*)", rest)
        if m is None or m.group(1) not in _MIDDLE:
            raise KeyError(key)
        leaf = _residual_leaf(m.group(2)) if m.group(1).startswith("resnets") else m.group(2)
        return f"{side}.{_MIDDLE[m.group(1)]}.{leaf}"
    if part == "down_blocks":
        index, _, leaf = rest.partition(".")
        return f"{side}.downsamples.{index}.{_residual_leaf(leaf)}"
    if part == "up_blocks":
        m = re.match(r"(\d+)\.(resnets\.(\d+)|upsamplers\.0)\.(.*)", rest)
        if m is None:
            raise KeyError(key)
        level, stride = int(m.group(1)), num_res_blocks + 2  # (nrb + 1) resnets + 1 upsampler per level
        if m.group(3) is not None:
            return f"{side}.upsamples.{level * stride + int(m.group(3))}.{_residual_leaf(m.group(4))}"
        return f"{side}.upsamples.{level * stride + num_res_blocks + 1}.{m.group(4)}"
    raise KeyError(key)


def diffusers_to_original_map(diffusers_keys: Iterable[str], num_res_blocks: int) -> dict[str, str]:
    """The reverse map needed to WRITE a VAE in the original layout: {diffusers key: original key}."""
    return {key: diffusers_to_original_name(key, num_res_blocks) for key in diffusers_keys}


def diffusers_num_res_blocks(keys: Iterable[str]) -> int:
    """`num_res_blocks` of a diffusers-named VAE: the decoder has one resnet more per level."""
    found = {int(m.group(1)) for k in keys if (m := re.match(r"decoder\.up_blocks\.0\.resnets\.(\d+)\.", k))}
    if not found:
        raise ValueError("no decoder.up_blocks.0.resnets.* keys")
    return max(found)


def infer_layout(shapes: Shapes) -> WanVAELayout:
    """Read the config from original-name shapes; raises ValueError naming what does not fit."""
    for need in ("conv2.weight", "encoder.conv1.weight", ORIGINAL_MARKER):
        if need not in shapes:
            raise ValueError(f"missing tensor {need}")
    if any(".to_qkv." in k for k in shapes if k.startswith(("encoder.downsamples.", "decoder.upsamples."))):
        raise ValueError("attention blocks outside the middle (attn_scales) are not supported")
    base_dim, z_dim = shapes["encoder.conv1.weight"][0], shapes["conv2.weight"][0]
    flat = {int(k.split(".")[2]) for k in shapes if k.startswith("encoder.downsamples.")}
    downs = sorted(
        int(k.split(".")[2]) for k in shapes if re.fullmatch(r"encoder\.downsamples\.\d+\.resample\.1\.weight", k)
    )
    levels = len(downs) + 1
    num_res_blocks, extra = divmod(len(flat) - len(downs), levels)
    stride = num_res_blocks + 1
    if (
        extra
        or num_res_blocks < 1
        or flat != set(range(len(flat)))
        or downs != [i * stride + num_res_blocks for i in range(levels - 1)]
    ):
        raise ValueError(f"encoder.downsamples indices {sorted(flat)} do not form a Wan encoder")
    dim_mult = []
    for level in range(levels):
        out_channels = shapes[f"encoder.downsamples.{level * stride}.residual.2.weight"][0]
        if out_channels % base_dim:
            raise ValueError(f"level {level} width {out_channels} is not a multiple of base_dim {base_dim}")
        dim_mult.append(out_channels // base_dim)
    temporal = tuple(f"encoder.downsamples.{i}.time_conv.weight" in shapes for i in downs)
    return WanVAELayout(base_dim, z_dim, tuple(dim_mult), num_res_blocks, temporal)
