"""kohya network module `networks.lokr_anima`: LoKr (LyCORIS semantics) on the Anima DiT, plus norm deltas.

network_args: `factor` (default 8), `full_matrix`, `decompose_both`, `rank_dropout`, `module_dropout`, and
the seed project's `lokr_`-prefixed aliases. `network_dim >= 100000` means full matrix (both Kronecker
halves whole), the convention of LyCORIS's docs and the seed project; the dim is kept as given.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn

from library.errors import ConfigError
from networks._args import COMMON_ARGS, check_known_args, get_arg, parse_bool, parse_int
from networks._base import AnimaAdapterNetwork
from networks._build import Tensors, build_from_weights, build_network, check_common_values, parse_common
from networks._lokr_module import LoKrLayout, LoKrModule, lokr_layout

logger = logging.getLogger(__name__)

MODULE_NAME = "networks.lokr_anima"
ADAPTER_KIND, ARG_PREFIX = "lokr", "lokr_"  # for networks._plan
DEFAULT_FACTOR = 8
FULL_MATRIX_DIM = 100000
KNOWN_ARGS = COMMON_ARGS | {"factor", "decompose_both", "full_matrix", "algo", "lokr_factor", "lokr_decompose_both",
                            "lokr_full_matrix", "lokr_rank_dropout", "lokr_module_dropout"}


def check_network_args(kwargs: dict[str, Any]) -> None:
    """Start-up check of `--network_args` names and values; LyCORIS's `algo` is accepted when it says lokr."""
    check_known_args(kwargs, KNOWN_ARGS, MODULE_NAME)
    algo = str(kwargs.get("algo", "lokr")).strip().lower()
    if algo != "lokr":
        raise ConfigError(f"--network_args algo={algo}: {MODULE_NAME} trains LoKr only. For LoRA use "
                          f"--network_module networks.lora_anima, for LoHa networks.loha_anima; LyCORIS's other "
                          f"algorithms train with --network_module lycoris.kohya.")
    check_common_values(kwargs, prefix="lokr_")
    lokr_options(kwargs)


def lokr_options(kwargs: dict[str, Any]) -> tuple[int, bool, bool]:
    """(factor, decompose_both, full_matrix) from `network_args`, the seed project's aliases included."""
    factor = parse_int(get_arg(kwargs, "factor", "lokr_factor"), "factor", DEFAULT_FACTOR)
    decompose_both = parse_bool(get_arg(kwargs, "decompose_both", "lokr_decompose_both"), "decompose_both", False)
    full_matrix = parse_bool(get_arg(kwargs, "full_matrix", "lokr_full_matrix"), "full_matrix", False)
    if factor == 0 or factor < -1:
        raise ConfigError(f"--network_args factor={factor}: use a positive factor, or -1 for the most balanced split.")
    return factor, decompose_both, full_matrix


def linear_layout(out_in: tuple[int, int], dim: int, kwargs: dict[str, Any]) -> LoKrLayout:
    """The layout `create_network` gives a Linear of shape (out, in) at rank `dim`."""
    factor, decompose_both, full_matrix = lokr_options(kwargs)
    return lokr_layout(out_in[0], out_in[1], dim, factor, decompose_both, full_matrix or dim >= FULL_MATRIX_DIM)


def tensor_shapes(out_in: tuple[int, int], dim: int, kwargs: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """{suffix: shape} of the module `create_network` puts on a Linear (out, in): the start-up plan."""
    return linear_layout(out_in, dim, kwargs).tensor_shapes()


def file_tensor_shapes(path: str, out_in: tuple[int, int],
                       shapes: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, tuple[int, ...]]:
    """{suffix: shape} of the module `create_network_from_weights` builds from a file's (key, shape) entries."""
    return layout_from_shapes(path, out_in, shapes, None).tensor_shapes()


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
    options = parse_common(kwargs, None, prefix="lokr_")
    if options.dropout or neuron_dropout:
        logger.warning("LoKr has no neuron dropout (as in LyCORIS); use rank_dropout or module_dropout.")

    def make_linear(path: str, linear: nn.Linear, dim: int, alpha: float) -> LoKrModule:
        layout = linear_layout((linear.out_features, linear.in_features), dim, kwargs)
        return LoKrModule(path, linear, layout, alpha, multiplier, options.rank_dropout, options.module_dropout)

    return build_network(MODULE_NAME, unet, multiplier, network_dim, network_alpha, kwargs, options, make_linear,
                         text_encoders)


def layout_from_tensors(path: str, linear: nn.Linear, tensors: Tensors) -> LoKrLayout:
    """The layout a file's LoKr tensors describe; the rank is the split half's (ComfyUI's rule: w2's wins)."""
    alpha = float(tensors["alpha"][1]) if "alpha" in tensors else None
    return layout_from_shapes(path, (linear.out_features, linear.in_features),
                              {suffix: (key, tuple(t.shape)) for suffix, (key, t) in tensors.items()}, alpha)


def layout_from_shapes(path: str, out_in: tuple[int, int], shapes: dict[str, tuple[str, tuple[int, ...]]],
                       alpha: float | None) -> LoKrLayout:
    """`layout_from_tensors` from {suffix: (key, shape)}: what a file header gives the start-up check."""
    key = next(iter(shapes.values()))[0]
    shape = {suffix: value[1] for suffix, value in shapes.items()}
    split_w1, split_w2 = "lokr_w1" not in shape, "lokr_w2" not in shape
    try:
        w1 = (shape["lokr_w1_a"][0], shape["lokr_w1_b"][1]) if split_w1 else tuple(shape["lokr_w1"])
        w2 = (shape["lokr_w2_a"][0], shape["lokr_w2_b"][1]) if split_w2 else tuple(shape["lokr_w2"])
    except KeyError as missing:
        raise ConfigError(f"--network_weights key {key}: module {path} lacks {missing.args[0]}.") from None
    if (w1[0] * w2[0], w1[1] * w2[1]) != tuple(out_in):
        raise ConfigError(
            f"--network_weights key {key}: kron of {w1} and {w2} is {(w1[0] * w2[0], w1[1] * w2[1])}, "
            f"but {path} is {tuple(out_in)}."
        )
    if split_w2:
        rank = shape["lokr_w2_b"][0]
    elif split_w1:
        rank = shape["lokr_w1_b"][0]
    else:
        rank = max(1, round(alpha)) if alpha is not None else max(w2)
    return LoKrLayout(tuple(w1), tuple(w2), rank, split_w1, split_w2)


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
    """Layout per module (which halves are split, rank) and alpha from the file."""
    options = parse_common(kwargs, None, prefix="lokr_")

    def from_tensors(path: str, linear: nn.Linear, tensors: Tensors) -> LoKrModule:
        alpha = float(tensors["alpha"][1]) if "alpha" in tensors else None
        layout = layout_from_tensors(path, linear, tensors)
        return LoKrModule(path, linear, layout, alpha, multiplier, options.rank_dropout, options.module_dropout)

    return build_from_weights(
        MODULE_NAME,
        "lokr",
        unet,
        multiplier,
        file,
        weights_sd,
        kwargs,
        options,
        from_tensors,
        text_encoders,
    )
