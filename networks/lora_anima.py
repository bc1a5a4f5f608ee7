"""kohya network module `networks.lora_anima`: LoRA on the Anima DiT (and its llm_adapter), plus norm deltas.

Files are written as `diffusion_model.<module>.lora_down.weight` / `.lora_up.weight` / `.alpha` and
`<module>.w_norm`, which ComfyUI loads unchanged (adapter-files.md §10).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from networks._args import COMMON_ARGS, check_known_args, parse_float
from networks._base import AnimaAdapterNetwork
from networks._build import Tensors, build_from_weights, build_network, check_common_values, parse_common
from networks._lora_module import LoRAModule

MODULE_NAME = "networks.lora_anima"
ADAPTER_KIND, ARG_PREFIX = "lora", ""  # for networks._plan
KNOWN_ARGS = COMMON_ARGS | {"loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio"}


def check_network_args(kwargs: dict[str, Any]) -> None:
    """Start-up check of `--network_args` names and values, parsed as the build parses them."""
    check_known_args(kwargs, KNOWN_ARGS, MODULE_NAME)
    check_common_values(kwargs)
    for name in sorted(KNOWN_ARGS - COMMON_ARGS):
        parse_float(kwargs.get(name), name, None)


def tensor_shapes(out_in: tuple[int, int], dim: int, kwargs: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """{suffix: shape} of the LoRA `create_network` puts on a Linear (out, in) at rank `dim`: the start-up plan."""
    return {"lora_down.weight": (dim, out_in[1]), "lora_up.weight": (out_in[0], dim), "alpha": ()}


def file_tensor_shapes(path: str, out_in: tuple[int, int],
                       shapes: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, tuple[int, ...]]:
    """{suffix: shape} of the LoRA `create_network_from_weights` builds from a file's (key, shape) entries."""
    rank = shapes["lora_down.weight"][1][0] if "lora_down.weight" in shapes else shapes["lora_up.weight"][1][1]
    return tensor_shapes(out_in, rank, {})


def create_network(
    multiplier: float,
    network_dim: int | None,
    network_alpha: float | None,
    vae,
    text_encoders,
    unet: nn.Module,
    neuron_dropout: float | None = None,
    **kwargs: Any,
) -> AnimaAdapterNetwork:
    check_network_args(kwargs)
    options = parse_common(kwargs, neuron_dropout)

    def make_linear(path: str, linear: nn.Linear, dim: int, alpha: float) -> LoRAModule:
        return LoRAModule(
            path, linear, dim, alpha, multiplier, options.dropout, options.rank_dropout, options.module_dropout
        )

    return build_network(MODULE_NAME, unet, multiplier, network_dim, network_alpha, kwargs, options, make_linear,
                         text_encoders)


def create_network_from_weights(
    multiplier: float,
    file: str | None,
    vae,
    text_encoders,
    unet: nn.Module,
    weights_sd: dict[str, torch.Tensor] | None = None,
    for_inference: bool = False,
    **kwargs: Any,
) -> tuple[AnimaAdapterNetwork, dict[str, torch.Tensor]]:
    """Rank per module from `lora_down` rows, alpha from the file (missing alpha: alpha = rank)."""
    options = parse_common(kwargs, None)

    def from_tensors(path: str, linear: nn.Linear, tensors: Tensors) -> LoRAModule:
        rank = (
            tensors["lora_down.weight"][1].shape[0]
            if "lora_down.weight" in tensors
            else tensors["lora_up.weight"][1].shape[1]
        )
        alpha = float(tensors["alpha"][1]) if "alpha" in tensors else None
        return LoRAModule(
            path, linear, rank, alpha, multiplier, options.dropout, options.rank_dropout, options.module_dropout
        )

    return build_from_weights(
        MODULE_NAME,
        "lora",
        unet,
        multiplier,
        file,
        weights_sd,
        kwargs,
        options,
        from_tensors,
        text_encoders,
    )
