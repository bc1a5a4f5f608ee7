"""The network a run would build, as {module path: {suffix: shape}}, from a model's module shapes alone (a meta-device
DiT made from its file's header holds no weight), and the fit of a `--network_weights` header against it.

Start-up checks use it, so `exclude_patterns` that select nothing, a file of the other kind (LoRA / LoKr) or of
another rank fail in the first seconds instead of after the models and caches are ready. The selection, ranks and
per-kind shapes come from the functions the build itself uses (`targets_with_ranks`, the kind's `tensor_shapes`).
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import torch
import torch.nn as nn

from library.anima.file_slots import not_an_adapter
from library.anima.model import AnimaConfig, AnimaDiT
from library.errors import ConfigError
from library.network_setup import import_network_module
from library.text_encoder_lora import caches_text, trains_text_encoder
from library.weight_files import read_safetensors_header
from networks._adapter_module import check_file_tensors
from networks._base import report_unmatched
from networks._build import model_paths, parse_common, targets_with_ranks
from networks._keys import group_by_module, is_text_encoder_key, kind_of_suffix

Shape = tuple[int, ...]
Plan = dict[str, dict[str, Shape]]


def check_network_fits(args: Namespace, kwargs: Mapping[str, Any], config: AnimaConfig) -> None:
    """Start-up check of the network `args` asks for on the DiT that `config` (read from its header) describes:
    `--network_args` names and values, a selection that is not empty, and every `--network_weights` tensor's kind
    and shape. A network module other than ours, or a file that is no readable .safetensors, is left to the checks
    that follow (`NetworkTrainer.validate`, `check_adapter_file`)."""
    try:
        kind = import_network_module(args.network_module or "")
    except ImportError:
        return
    if not hasattr(kind, "tensor_shapes"):
        return
    kind.check_network_args(dict(kwargs))
    with torch.device("meta"):
        unet = AnimaDiT(config)
    plan = None if args.dim_from_weights else planned_tensors(kind, unet, args.network_dim, kwargs)
    file = args.network_weights
    if not file or not str(file).endswith(".safetensors"):
        return  # a torch.save file cannot be read without unpickling it
    try:
        header = read_safetensors_header(file)
    except (OSError, ValueError):
        return
    dit_part = {key: entry for key, entry in header.items() if not is_text_encoder_key(key)}
    if len(dit_part) < len(header):
        check_text_encoder_part(args, str(file), next(key for key in header if key not in dit_part), bool(dit_part))
    if dit_part:  # the text-encoder part's shapes are checked by the load, once Qwen3 is there
        check_weights_fit(kind, unet, str(file), dit_part, plan)


def check_text_encoder_part(args: Namespace, file: str, key: str, has_dit_part: bool) -> None:
    """A --network_weights file with a text-encoder LoRA: refused where that part can neither train nor apply (cached
    text outputs were made without it, as kohya refuses), or where it is all the file holds and this run trains no
    text-encoder LoRA."""
    if not trains_text_encoder(args) and caches_text(args) and not args.network_train_unet_only:
        raise ConfigError(f"--network_weights {file} holds a text-encoder LoRA (e.g. {key}), which cannot be trained "
                          f"with cached text-encoder outputs (they are made without it), as in kohya. Drop "
                          f"--cache_text_encoder_outputs(_to_disk) to train it too, or add --network_train_unet_only "
                          f"to train on from the file's DiT part alone.")
    if not trains_text_encoder(args) and not has_dit_part:
        raise ConfigError(f"--network_weights {file} holds only a text-encoder LoRA (e.g. {key}), and this run trains "
                          f"the DiT only (--network_train_unet_only). Drop that option to train the text encoder.")


def planned_tensors(kind: ModuleType, unet: nn.Module, network_dim: int | None, kwargs: Mapping[str, Any]) -> Plan:
    """What `kind.create_network` would hold on `unet`; raises ConfigError when the patterns select nothing."""
    options = parse_common(kwargs, None, kind.ARG_PREFIX)
    linears, norms = targets_with_ranks(unet, network_dim, None, kwargs, options)
    plan = {path: kind.tensor_shapes((linear.out_features, linear.in_features), dim, dict(kwargs))
            for path, linear, dim, _alpha in linears}
    return plan | {path: {"w_norm": tuple(norm.weight.shape)} for path, norm in norms}


def check_weights_fit(kind: ModuleType, unet: nn.Module, file: str, header: Mapping[str, Mapping[str, Any]],
                      plan: Plan | None) -> None:
    """Each module of the file's header fits the network: `plan` is the option-built network, or None when the
    network is built from the file (--dim_from_weights), where each module must fit its Linear. The checks and
    messages are the load's (`check_file_tensors`, `report_unmatched`)."""
    shapes = {key: tuple(entry["shape"]) for key, entry in header.items()}
    grouped, unmatched = group_by_module(shapes, model_paths(unet), file)
    modules = dict(unet.named_modules())
    kind_name = kind.ADAPTER_KIND
    fitted = 0
    for path, tensors in grouped.items():
        module = modules[path]
        if isinstance(module, nn.Linear) and plan is None:
            if not any(kind_of_suffix(suffix) for suffix in tensors):
                unmatched.extend(key for key, _shape in tensors.values())
                continue
            own_kind = [suffix for suffix in tensors if kind_of_suffix(suffix) == kind_name]
            out_in = (module.out_features, module.in_features)
            own = kind.file_tensor_shapes(path, out_in, tensors) if own_kind else {}
        elif plan is None:
            own = {"w_norm": tuple(module.weight.shape)}
        elif path in plan:
            own = plan[path]
        else:
            unmatched.extend(key for key, _shape in tensors.values())
            continue
        if "w_norm" in own:
            unmatched.extend(key for suffix, (key, _s) in tensors.items() if suffix != "w_norm")
            tensors = {suffix: value for suffix, value in tensors.items() if suffix == "w_norm"}
            if not tensors:
                continue
        check_file_tensors(kind_name, path, own, tensors)
        fitted += 1
    if not fitted:
        if wrong_slot := not_an_adapter(file):
            raise ConfigError(f"--network_weights {file}: {wrong_slot}.")
        report_unmatched(unmatched, 0, file)
