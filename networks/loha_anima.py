"""kohya network module `networks.loha_anima`: LoHa (LyCORIS semantics) on the Anima DiT, plus norm deltas.

Files are written as `diffusion_model.<module>.hada_w1_a` / `.hada_w1_b` / `.hada_w2_a` / `.hada_w2_b` / `.alpha`
and `<module>.w_norm`, which ComfyUI loads unchanged. network_args: the common ones (targets, rank and module
dropout, per-regex ranks and lrs); LyCORIS's `algo=loha` is accepted. kohya's `networks.loha` is an alias.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn

from library.errors import ConfigError
from networks._args import COMMON_ARGS, check_known_args
from networks._base import AnimaAdapterNetwork
from networks._build import Tensors, build_from_weights, build_network, check_common_values, parse_common
from networks._loha_module import LoHaModule, loha_shapes

logger = logging.getLogger(__name__)

MODULE_NAME = "networks.loha_anima"
ADAPTER_KIND, ARG_PREFIX = "loha", ""  # for networks._plan
KNOWN_ARGS = COMMON_ARGS | {"algo"}


def check_network_args(kwargs: dict[str, Any]) -> None:
    """Start-up check of `--network_args` names and values; LyCORIS's `algo` is accepted when it says loha."""
    check_known_args(kwargs, KNOWN_ARGS, MODULE_NAME)
    algo = str(kwargs.get("algo", "loha")).strip().lower()
    if algo != "loha":
        raise ConfigError(f"--network_args algo={algo}: {MODULE_NAME} trains LoHa only. Use networks.lora_anima or "
                          f"networks.lokr_anima, or --network_module lycoris.kohya for LyCORIS's other algorithms.")
    check_common_values(kwargs)


def tensor_shapes(out_in: tuple[int, int], dim: int, kwargs: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """{suffix: shape} of the LoHa `create_network` puts on a Linear (out, in) at rank `dim`: the start-up plan."""
    return loha_shapes(out_in[0], out_in[1], dim)


def file_tensor_shapes(path: str, out_in: tuple[int, int],
                       shapes: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, tuple[int, ...]]:
    """{suffix: shape} of the LoHa `create_network_from_weights` builds from a file's (key, shape) entries."""
    return loha_shapes(out_in[0], out_in[1], file_rank(shapes))


def file_rank(shapes: dict[str, tuple[str, tuple[int, ...]]]) -> int:
    """The rank ComfyUI reads: the rows of `hada_w1_b` (else the columns of `hada_w1_a`)."""
    if "hada_w1_b" in shapes:
        return shapes["hada_w1_b"][1][0]
    return shapes["hada_w1_a"][1][-1]


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
    options = parse_common(kwargs, None)
    if options.dropout or neuron_dropout:
        logger.warning("LoHa has no neuron dropout (as in LyCORIS); use rank_dropout or module_dropout.")

    def make_linear(path: str, linear: nn.Linear, dim: int, alpha: float) -> LoHaModule:
        return LoHaModule(path, linear, dim, alpha, multiplier, options.rank_dropout, options.module_dropout)

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
    """Rank per module from `hada_w1_b` rows, alpha from the file (missing alpha: alpha = rank)."""
    options = parse_common(kwargs, None)

    def from_tensors(path: str, linear: nn.Linear, tensors: Tensors) -> LoHaModule:
        rank = file_rank({suffix: (key, tuple(t.shape)) for suffix, (key, t) in tensors.items()})
        alpha = float(tensors["alpha"][1]) if "alpha" in tensors else None
        return LoHaModule(path, linear, rank, alpha, multiplier, options.rank_dropout, options.module_dropout)

    return build_from_weights(
        MODULE_NAME, "loha", unet, multiplier, file, weights_sd, kwargs, options, from_tensors, text_encoders
    )
