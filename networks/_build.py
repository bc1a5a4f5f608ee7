"""Building a network from `network_args` or from a weights file; the LoRA and LoKr entry points differ
only in how one Linear's adapter is made (`make_linear`) or read back from a file (`from_tensors`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from library.errors import ConfigError
from networks._adapter_module import AdapterModule
from networks._args import first_match, get_arg, parse_bool, parse_float, parse_patterns, parse_regex_values
from networks._base import AnimaAdapterNetwork, keep_suffixes, read_weights, report_unmatched
from networks._keys import (
    ADAPTER_KINDS,
    TEXT_ENCODER_PREFIX,
    group_by_module,
    kind_of_suffix,
)
from networks._norm_module import NormModule
from networks._targets import TargetRules, find_targets, find_text_encoder_targets, is_norm, text_encoder_module

logger = logging.getLogger(__name__)

DEFAULT_DIM, DEFAULT_ALPHA = 4, 1.0  # kohya's lora_anima defaults

Tensors = dict[str, tuple[str, torch.Tensor]]
MakeLinear = Callable[[str, nn.Linear, int, float], AdapterModule]
FromTensors = Callable[[str, nn.Linear, Tensors], AdapterModule]


@dataclass
class CommonOptions:
    rules: TargetRules
    dropout: float | None
    rank_dropout: float | None
    module_dropout: float | None
    llm_adapter_lr: float | None
    norm_lr: float | None
    verbose: bool


def parse_common(kwargs: Mapping[str, Any], neuron_dropout: float | None, prefix: str = "") -> CommonOptions:
    """Options both network kinds read; `prefix` adds the seed project's aliases (`lokr_rank_dropout`)."""

    def value(name: str) -> Any:
        return get_arg(kwargs, name, prefix + name) if prefix else kwargs.get(name)

    rules = TargetRules(
        train_llm_adapter=parse_bool(kwargs.get("train_llm_adapter"), "train_llm_adapter", True),
        train_norm=parse_bool(kwargs.get("train_norm"), "train_norm", True),
        include=parse_patterns(kwargs.get("include_patterns"), "include_patterns"),
        exclude=parse_patterns(kwargs.get("exclude_patterns"), "exclude_patterns"),
    )
    return CommonOptions(
        rules=rules,
        dropout=parse_float(get_arg(kwargs, "neuron_dropout", "dropout"), "neuron_dropout", neuron_dropout),
        rank_dropout=parse_float(value("rank_dropout"), "rank_dropout", None),
        module_dropout=parse_float(value("module_dropout"), "module_dropout", None),
        llm_adapter_lr=parse_float(kwargs.get("llm_adapter_lr"), "llm_adapter_lr", None),
        norm_lr=parse_float(kwargs.get("norm_lr"), "norm_lr", None),
        verbose=parse_bool(kwargs.get("verbose"), "verbose", False),
    )


def model_paths(unet: nn.Module) -> list[str]:
    """Module paths a file may address: every Linear and every norm with a scale."""
    return [path for path, m in unet.named_modules() if isinstance(m, nn.Linear) or is_norm(m)]


def text_encoder_linears(text_encoders: list | None) -> dict[str, nn.Linear]:
    """{network path: Linear} of every Linear of the Qwen3 text encoder a file may address (none without one)."""
    qwen = text_encoder_module(text_encoders)
    if qwen is None:
        return {}
    return {TEXT_ENCODER_PREFIX + path: m for path, m in qwen.named_modules() if isinstance(m, nn.Linear)}


def targets_with_ranks(
    unet: nn.Module, network_dim: int | None, network_alpha: float | None, kwargs: Mapping[str, Any],
    options: CommonOptions,
) -> tuple[list[tuple[str, nn.Linear, int, float]], list[tuple[str, nn.Module]]]:
    """([(path, Linear, rank, alpha)], [(path, norm)]) the network wraps: `network_reg_dims` / `network_reg_alphas`
    override the rank and alpha per module. Shared by the build and the start-up plan (`planned_tensors`)."""
    linears, norms = find_targets(unet, options.rules)
    return _ranked(linears, network_dim, network_alpha, kwargs, ""), norms


def text_encoder_targets_with_ranks(
    text_encoders: list | None, network_dim: int | None, network_alpha: float | None, kwargs: Mapping[str, Any],
    options: CommonOptions,
) -> list[tuple[str, nn.Linear, int, float]]:
    """[(network path, Linear, rank, alpha)] of the text-encoder LoRA kohya builds whenever it is given the text
    encoder; `network_reg_dims` / `network_reg_alphas` match the path in the Qwen3 model, as in kohya."""
    qwen = text_encoder_module(text_encoders)
    if qwen is None:
        return []
    targets = find_text_encoder_targets(qwen, options.rules)
    return _ranked(targets, network_dim, network_alpha, kwargs, TEXT_ENCODER_PREFIX)


def _ranked(targets: list[tuple[str, nn.Linear]], network_dim: int | None, network_alpha: float | None,
            kwargs: Mapping[str, Any], prefix: str) -> list[tuple[str, nn.Linear, int, float]]:
    """Each target's rank and alpha (a `network_reg_*` rule matching its path wins); `prefix` + path names it."""
    dim = DEFAULT_DIM if network_dim is None else int(network_dim)
    alpha = DEFAULT_ALPHA if network_alpha is None else float(network_alpha)
    reg_dims = parse_regex_values(kwargs.get("network_reg_dims"), "network_reg_dims")
    reg_alphas = parse_regex_values(kwargs.get("network_reg_alphas"), "network_reg_alphas")
    ranked = []
    for path, linear in targets:
        module_dim, module_alpha = first_match(reg_dims, path), first_match(reg_alphas, path)
        ranked.append((prefix + path, linear, dim if module_dim is None else int(module_dim),
                       alpha if module_alpha is None else module_alpha))
    return ranked


def check_common_values(kwargs: Mapping[str, Any], prefix: str = "") -> None:
    """Start-up check: every value both network kinds read parses as the build will parse it (a boolean that is
    none, a bad regex, a reg rule without its value)."""
    parse_common(kwargs, None, prefix)
    for name in ("network_reg_dims", "network_reg_alphas", "network_reg_lrs"):
        parse_regex_values(kwargs.get(name), name)


def build_network(
    module_name: str,
    unet: nn.Module,
    multiplier: float,
    network_dim: int | None,
    network_alpha: float | None,
    kwargs: Mapping[str, Any],
    options: CommonOptions,
    make_linear: MakeLinear,
    text_encoders: list | None = None,
) -> AnimaAdapterNetwork:
    """The DiT's adapters and, given the text encoder, its LoRA (kohya builds both; `apply_to` keeps what trains)."""
    dim = DEFAULT_DIM if network_dim is None else int(network_dim)
    alpha = DEFAULT_ALPHA if network_alpha is None else float(network_alpha)
    linears, norms = targets_with_ranks(unet, network_dim, network_alpha, kwargs, options)
    linears = text_encoder_targets_with_ranks(text_encoders, network_dim, network_alpha, kwargs, options) + linears
    adapters: list[AdapterModule] = [make_linear(*target) for target in linears]
    adapters += [NormModule(path, norm) for path, norm in norms]
    if options.verbose:
        for adapter in adapters:
            logger.info("  %s %s rank %s scale %.6g", adapter.kind, adapter.path, adapter.rank, adapter.scale)
    return AnimaAdapterNetwork(
        module_name,
        adapters,
        list(text_encoder_linears(text_encoders)) + model_paths(unet),
        multiplier,
        dim,
        alpha,
        {k: str(v) for k, v in kwargs.items()},
        options.llm_adapter_lr,
        options.norm_lr,
    )


def build_from_weights(
    module_name: str,
    kind: str,
    unet: nn.Module,
    multiplier: float,
    file: str | None,
    weights_sd: dict[str, torch.Tensor] | None,
    kwargs: Mapping[str, Any],
    options: CommonOptions,
    from_tensors: FromTensors,
    text_encoders: list | None = None,
) -> tuple[AnimaAdapterNetwork, dict[str, torch.Tensor]]:
    """A network holding exactly the file's modules, with the file's ranks, layouts and alphas; its text-encoder
    modules too when the text encoder is given (else their keys are reported unmatched). A module of another
    adapter kind (`ADAPTER_KINDS`) is refused, naming the network module that loads it."""
    weights = weights_sd if weights_sd is not None else read_weights(file)
    source = str(file) if file is not None else "weights"
    encoder_linears = text_encoder_linears(text_encoders)
    paths = list(encoder_linears) + model_paths(unet)
    modules = encoder_linears | dict(unet.named_modules())
    grouped, unmatched = group_by_module(weights, paths)
    own_suffixes = ADAPTER_KINDS[kind].suffixes
    adapters: list[AdapterModule] = []
    for path, tensors in grouped.items():
        module = modules[path]
        foreign = [(key, ADAPTER_KINDS[other]) for suffix, (key, _t) in tensors.items()
                   if (other := kind_of_suffix(suffix)) not in (None, kind)]
        if foreign and isinstance(module, nn.Linear):
            key, spec = foreign[0]
            raise ConfigError(f"{source}: key {key} is a {spec.label} weight; load this file with "
                              f"--network_module {spec.module}.")
        if isinstance(module, nn.Linear) and any(s in own_suffixes for s in tensors):
            adapter = from_tensors(path, module, tensors)
        elif is_norm(module) and "w_norm" in tensors:
            tensors = keep_suffixes(tensors, ("w_norm",), unmatched)
            adapter = NormModule(path, module)
        else:
            unmatched.extend(key for key, _t in tensors.values())
            continue
        adapter.load_file_tensors(tensors)
        adapters.append(adapter)
    report_unmatched(unmatched, len(adapters), source)
    linear = [a for a in adapters if a.kind != "norm"]
    dim = linear[0].rank if linear else DEFAULT_DIM
    alpha = float(linear[0].alpha) if linear else DEFAULT_ALPHA
    network = AnimaAdapterNetwork(
        module_name,
        adapters,
        paths,
        multiplier,
        dim,
        alpha,
        {k: str(v) for k, v in kwargs.items()},
        options.llm_adapter_lr,
        options.norm_lr,
    )
    return network, weights
