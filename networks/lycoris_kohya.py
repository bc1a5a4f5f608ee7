"""`--network_module lycoris.kohya`: LyCORIS's own kohya network on the Anima DiT, its files in ComfyUI's form.

LyCORIS builds, trains and names the modules (`lora_unet_<path with underscores>`, its default preset's targets:
every Linear of the DiT blocks, the patch and time embedders and the final layer, adaln modulation included;
adapter-files.md §4.4). What differs from calling LyCORIS directly:
- files are written as `diffusion_model.<dotted path>.<LyCORIS suffix>`, the form ComfyUI reads, and that form,
  LyCORIS's `lora_unet_` form and its standalone `lycoris_` form are read back (--network_weights,
  --dim_from_weights, --base_weights);
- boolean `network_args` are parsed as booleans (LyCORIS passes `decompose_both=False` on as a true string);
- `dora_wd=True` defaults to input-axis DoRA (`wd_on_output=False`), the only axis ComfyUI applies as LyCORIS trains
  it (adapter-files.md §9);
- `train_norm=True` is refused: LyCORIS would wrap Anima's weight-less LayerNorms, whose forward then fails;
- the DiT only: the text encoder is not passed to LyCORIS.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
import torch.nn as nn
from lycoris.kohya import LycorisNetworkKohya
from lycoris.kohya import create_network as lycoris_create_network
from lycoris.kohya import create_network_from_weights as lycoris_create_network_from_weights

from library.errors import ConfigError
from networks._args import parse_bool
from networks._base import read_weights, report_unmatched, write_adapter_file
from networks._keys import PREFIX

logger = logging.getLogger(__name__)

MODULE_NAME = "lycoris.kohya"
LYCORIS_PREFIX = LycorisNetworkKohya.LORA_PREFIX_UNET + "_"
STANDALONE_PREFIX = "lycoris_"
ALGOS = ("lora", "locon", "loha", "lokr", "full")  # each checked against ComfyUI's formula (tests)
BOOLEAN_ARGS = ("dora_wd", "wd_on_output", "full_matrix", "decompose_both", "use_tucker", "use_cp", "use_conv_cp",
                "use_scalar", "rs_lora", "bypass_mode", "unbalanced_factorization", "train_llm_adapter", "rescaled",
                "rank_dropout_scale", "train_norm")


def check_network_args(kwargs: dict[str, Any]) -> None:
    """Start-up check: an algorithm whose file ComfyUI applies as trained, booleans that are booleans, no norms."""
    algo = str(kwargs.get("algo") or "lora").strip().lower()
    if algo not in ALGOS:
        raise ConfigError(f"--network_args algo={algo}: with --network_module {MODULE_NAME} use one of "
                          f"{', '.join(ALGOS)}; their saved files load in ComfyUI exactly as they trained.")
    values = {name: parse_bool(kwargs.get(name), name, False) for name in BOOLEAN_ARGS}
    if values["train_norm"]:
        raise ConfigError(f"--network_args train_norm=True: {MODULE_NAME} would wrap Anima's LayerNorms, which have no "
                          "weight, and fail in the first step. Train norm scales with networks.lora_anima, "
                          "networks.lokr_anima or networks.loha_anima (train_norm is on by default there).")
    if values["dora_wd"] and parse_bool(kwargs.get("wd_on_output"), "wd_on_output", False):
        logger.warning("dora_wd with wd_on_output=True: ComfyUI normalises output-axis DoRA by the original weight's "
                       "norm, not the trained one's, so the file will not look in ComfyUI as it did in training. "
                       "Leave wd_on_output unset (input axis) for files that match.")


def lycoris_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`network_args` as LyCORIS should read them: booleans as booleans, DoRA on the input axis unless asked."""
    out = dict(kwargs)
    for name in BOOLEAN_ARGS:
        if name in out:
            out[name] = parse_bool(out[name], name, False)
    if out.get("dora_wd") and "wd_on_output" not in out:
        out["wd_on_output"] = False
        logger.info("dora_wd: input-axis DoRA (wd_on_output=False), the form ComfyUI applies as trained.")
    return out


def module_names(unet: nn.Module) -> dict[str, str]:
    """{LyCORIS module name: dotted path} for every module of the DiT."""
    return {LYCORIS_PREFIX + path.replace(".", "_"): path for path, _module in unet.named_modules() if path}


def comfy_form(state: dict[str, torch.Tensor], names: dict[str, str]) -> dict[str, torch.Tensor]:
    """LyCORIS's `lora_unet_<name>.<suffix>` keys as `diffusion_model.<dotted path>.<suffix>`."""
    out = {}
    for key, tensor in state.items():
        name, _, suffix = key.partition(".")
        if name not in names:
            raise ConfigError(f"LyCORIS module {name} is no module of the DiT; it cannot be saved for ComfyUI.")
        out[f"{PREFIX}{names[name]}.{suffix}"] = tensor
    return out


def split_path(rest: str, paths: dict[str, str]) -> tuple[str, str] | None:
    """(module path, suffix) for `<dotted path>.<suffix>`, the longest path that is a module; None if none is."""
    cut = rest.rfind(".")
    while cut > 0:
        if rest[:cut] in paths:
            return rest[:cut], rest[cut + 1:]
        cut = rest.rfind(".", 0, cut)
    return None


def lycoris_form(weights: dict[str, torch.Tensor], names: dict[str, str], source: str) -> dict[str, torch.Tensor]:
    """A file in our form, LyCORIS's kohya form or its standalone `lycoris_` form as LyCORIS's kohya keys; other keys
    are reported (none matching is an error)."""
    by_path = {path: name for name, path in names.items()}
    out, unmatched = {}, []
    for key, tensor in weights.items():
        if key.startswith(STANDALONE_PREFIX):  # LyCORIS's wrapper used outside kohya names modules lycoris_<path>
            key = LYCORIS_PREFIX + key.removeprefix(STANDALONE_PREFIX)
        if key.partition(".")[0] in names:
            out[key] = tensor
            continue
        split = split_path(key.removeprefix(PREFIX), by_path) if key.startswith(PREFIX) else None
        if split:
            out[f"{by_path[split[0]]}.{split[1]}"] = tensor
        else:
            unmatched.append(key)
    report_unmatched(unmatched, len(out), source)
    return out


class AnimaLycorisNetwork(LycorisNetworkKohya):
    """LyCORIS's network as LyCORIS built it (`adopt` re-classes it); only files and kohya's call defaults differ."""

    names: dict[str, str]

    def save_weights(self, file: str | os.PathLike, dtype: torch.dtype | None, metadata: dict[str, str] | None) -> None:
        metadata = {"ss_network_module": MODULE_NAME} | dict(metadata or {})
        write_adapter_file(comfy_form(self.state_dict(), self.names), file, dtype, metadata)

    def load_weights(self, file: str | os.PathLike) -> dict:
        """Either form, non-strict as LyCORIS loads; a module of the file that the network holds in another shape or
        kind (another algo or dim) is an error, not a warm start that silently keeps the fresh weights."""
        weights = lycoris_form(read_weights(file), self.names, str(file))
        own = self.state_dict()
        modules = {key.partition(".")[0] for key in own}
        foreign = [key for key in weights if key not in own and key.partition(".")[0] in modules]
        misfit = [key for key in weights if key in own and weights[key].numel() != own[key].numel()]
        if foreign or misfit:
            key = (foreign or misfit)[0]
            raise ConfigError(f"--network_weights {file}: {key} does not fit this network (another algo, network_dim "
                              "or network_args trained it). Give the options it was trained with, or add "
                              "--dim_from_weights to build the network from the file.")
        missing, unexpected = self.load_state_dict(weights, strict=False)
        if unexpected:
            logger.warning("%s: %d keys match no module of this network (e.g. %s)", file, len(unexpected),
                           ", ".join(unexpected[:5]))
        return {"loaded": len(weights) - len(unexpected), "not_in_file": len(missing), "unmatched_keys": unexpected}

    def merge_to(self, text_encoder, unet, weights_sd=None, dtype=None, device=None) -> None:
        super().merge_to(text_encoder, unet, weights_sd if weights_sd is not None else self.state_dict(), dtype,
                         device)


def adopt(network: LycorisNetworkKohya, unet: nn.Module) -> AnimaLycorisNetwork:
    network.__class__ = AnimaLycorisNetwork
    network.names = module_names(unet)
    return network


def create_network(multiplier: float, network_dim: int | None, network_alpha: float | None, vae, text_encoders,
                   unet: nn.Module, neuron_dropout: float | None = None, **kwargs: Any) -> AnimaLycorisNetwork:
    check_network_args(kwargs)
    network = lycoris_create_network(multiplier, network_dim, network_alpha, vae, None, unet,
                                     neuron_dropout=neuron_dropout, **lycoris_kwargs(kwargs))
    return adopt(network, unet)


def create_network_from_weights(multiplier: float, file: str | None, vae, text_encoders, unet: nn.Module,
                                weights_sd: dict[str, torch.Tensor] | None = None, for_inference: bool = False,
                                **kwargs: Any) -> tuple[AnimaLycorisNetwork, dict[str, torch.Tensor]]:
    """The network LyCORIS builds from the file's modules (either key form)."""
    names = module_names(unet)
    weights = weights_sd if weights_sd is not None else read_weights(file)
    source = str(file) if file is not None else "weights"
    weights = lycoris_form(weights, names, source)
    input_axis = [key for key, tensor in weights.items() if key.endswith(".dora_scale") and tensor.shape[0] == 1]
    if input_axis:
        raise ConfigError(f"{source}: {input_axis[0]} is input-axis DoRA, which LyCORIS cannot rebuild from a file "
                          "(it assumes the output axis). Build the network from the options instead: drop "
                          "--dim_from_weights and give --network_dim and --network_args as trained "
                          "(dora_wd=True); --network_weights then loads the file.")
    network, weights = lycoris_create_network_from_weights(multiplier, None, vae, None, unet, weights_sd=weights,
                                                           for_inference=for_inference, **lycoris_kwargs(kwargs))
    return adopt(network, unet), weights
