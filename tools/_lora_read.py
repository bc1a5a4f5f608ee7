"""Read any adapter file `--network_weights` reads into one exact, per-module form the LoRA tools share.

Module names are resolved the way ComfyUI and our networks resolve them (`networks/_keys.py`): every name a
module can have is generated from a model's own module paths, here a skeleton of the Anima DiT on the meta
device (no weights), so a kohya `lora_unet_` name is never guessed back into dots. Whatever cannot be
rewritten without changing its effect in ComfyUI is refused with a `ConfigError` naming the key: text-encoder
keys (our form is DiT-only), DoRA, Tucker, bias deltas, full-weight diffs on a Linear, unknown keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn
from safetensors import safe_open

from library.anima.dit_header import inspect_dit_file
from library.anima.file_slots import not_an_adapter
from library.anima.model import AnimaConfig, AnimaDiT
from library.errors import ConfigError
from networks._base import read_weights
from networks._build import model_paths
from networks._keys import LOHA_SUFFIXES, LORA_SUFFIXES, group_by_module, kind_of_suffix
from networks._targets import is_norm

TEXT_ENCODER_PREFIXES = ("lora_te", "text_encoders.", "text_encoder.", "qwen3")
# (marker in a key, what it is, why it cannot be rewritten exactly)
REFUSED = (
    (".dora_scale", "DoRA (dora_scale)", "its effect depends on the base weight's norms, so no plain LoRA equals it"),
    (".hada_t", "Tucker LoHa (hada_t1/t2)", "a convolution form; Anima has no convolutions to adapt"),
    (".lora_mid", "Tucker LoRA (lora_mid)", "a convolution form; Anima has no convolutions to adapt"),
    (".lokr_t2", "Tucker LoKr (lokr_t2)", "a convolution form; Anima has no convolutions to adapt"),
    (".oft_blocks", "OFT/BOFT", "an orthogonal rotation, not an additive delta"),
)


@dataclass
class ModulePatch:
    """One module's adapter in our suffixes; `alpha` is always set (0-dim float32) for LoRA and LoKr."""

    path: str
    kind: str  # "lora", "lokr", "loha", "norm" or "embedding" (a trigger's rows: a LoRA on llm_adapter.embed)
    tensors: dict[str, torch.Tensor]
    alpha_added: bool = False


def dit_skeleton(model_file: str | os.PathLike | None = None) -> nn.Module:
    """The Anima DiT on the meta device: the default (2B) config, or the exact one a DiT file's header gives."""
    config = inspect_dit_file(model_file, strict=False).config if model_file else AnimaConfig()
    with torch.device("meta"):
        return AnimaDiT(config)


def read_adapter_file(file: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a `.safetensors` or torch file; metadata is empty for torch files."""
    if not os.path.isfile(file):
        raise ConfigError(f"{file}: no such adapter file.")
    metadata: dict[str, str] = {}
    if str(file).endswith(".safetensors") and (wrong_slot := not_an_adapter(file)):
        raise ConfigError(f"{file}: {wrong_slot}. These tools read LoRA / LoKr files.")
    if str(file).endswith(".safetensors"):
        with safe_open(str(file), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    return read_weights(file), metadata


def _refuse_unmatched(keys: list[str], source: str) -> ConfigError:
    te = [k for k in keys if k.startswith(TEXT_ENCODER_PREFIXES)]
    if te:
        return ConfigError(
            f"{source}: {len(te)} text-encoder keys (e.g. {te[0]}). Our ComfyUI form and these tools are DiT-only, "
            "so rewriting the file would drop the text-encoder part and change its effect. ComfyUI loads "
            "kohya's lora_te_ keys as they are; use the file unconverted, or remove the text-encoder keys first "
            "if you want the DiT part alone."
        )
    for marker, what, why in REFUSED:
        hits = [k for k in keys if marker in k]
        if hits:
            return ConfigError(f"{source}: key {hits[0]} is {what}, which cannot be converted exactly: {why}.")
    shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
    return ConfigError(
        f"{source}: {len(keys)} unknown keys that address no module of the Anima DiT: {shown}. If the file is "
        "for a DiT of another size (more blocks), pass that DiT with --model."
    )


def _alpha(tensors: dict[str, tuple[str, torch.Tensor]], source: str) -> float | None:
    if "alpha" not in tensors:
        return None
    key, tensor = tensors["alpha"]
    if tensor.numel() != 1:
        raise ConfigError(f"{source}: key {key} has shape {tuple(tensor.shape)}; an alpha is one number.")
    return float(tensor)


def _check(ok: bool, source: str, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{source}: key {key}: {message}")


def _lora(path: str, module: nn.Linear | nn.Embedding, tensors: dict, source: str) -> ModulePatch:
    key = next(iter(tensors.values()))[0]
    out_features, in_features = module.weight.shape  # an Embedding's (rows, width) plays (out, in)
    _check(set(LORA_SUFFIXES) <= set(tensors), source, key, f"module {path} needs both lora_down and lora_up.")
    down = tensors["lora_down.weight"][1].flatten(1)
    up = tensors["lora_up.weight"][1].flatten(1)
    rank = down.shape[0]
    _check(
        tuple(down.shape) == (rank, in_features) and tuple(up.shape) == (out_features, rank),
        source,
        key,
        f"lora_down {tuple(down.shape)} / lora_up {tuple(up.shape)} do not fit {path} "
        f"({in_features} -> {out_features}); pass the DiT this file is for with --model.",
    )
    alpha = _alpha(tensors, source)
    return ModulePatch(
        path,
        "lora",
        {
            "lora_down.weight": down,
            "lora_up.weight": up,
            "alpha": torch.tensor(float(rank if alpha is None else alpha)),
        },
        alpha is None,
    )


def _half(tensors: dict, name: str, source: str, path: str) -> tuple[tuple[int, int], int | None]:
    """(shape, rank or None when whole) of one Kronecker half (`lokr_w1` or `lokr_w2`)."""
    key = next(iter(tensors.values()))[0]
    whole, a, b = name in tensors, f"{name}_a" in tensors, f"{name}_b" in tensors
    _check(whole != (a and b) and a == b, source, key, f"module {path} needs {name}, or {name}_a and {name}_b.")
    if whole:
        return tuple(tensors[name][1].shape), None
    shape_a, shape_b = tensors[f"{name}_a"][1].shape, tensors[f"{name}_b"][1].shape
    _check(len(shape_a) == len(shape_b) == 2 and shape_a[1] == shape_b[0], source, key, f"{name}_a @ {name}_b fails.")
    return (shape_a[0], shape_b[1]), shape_b[0]


def _lokr(path: str, linear: nn.Linear, tensors: dict, source: str) -> ModulePatch:
    key = next(iter(tensors.values()))[0]
    (w1, rank1), (w2, rank2) = _half(tensors, "lokr_w1", source, path), _half(tensors, "lokr_w2", source, path)
    _check(
        len(w1) == len(w2) == 2 and (w1[0] * w2[0], w1[1] * w2[1]) == (linear.out_features, linear.in_features),
        source,
        key,
        f"kron of {w1} and {w2} does not fit {path} ({linear.in_features} -> {linear.out_features}).",
    )
    alpha = _alpha(tensors, source)
    # ComfyUI's dim: w2_b's rows, else w1_b's; both halves whole means scale 1 whatever alpha says
    dim = rank2 if rank2 is not None else rank1
    default = float(dim if dim is not None else max(w2))
    kept = {suffix: tensor for suffix, (_key, tensor) in tensors.items() if suffix != "alpha"}
    kept["alpha"] = torch.tensor(default if alpha is None else alpha)
    return ModulePatch(path, "lokr", kept, alpha is None)


def _loha(path: str, linear: nn.Linear, tensors: dict, source: str) -> ModulePatch:
    key = next(iter(tensors.values()))[0]
    _check(set(LOHA_SUFFIXES) <= set(tensors), source, key, f"module {path} needs all of {', '.join(LOHA_SUFFIXES)}.")
    shape = {suffix: tuple(tensors[suffix][1].shape) for suffix in LOHA_SUFFIXES}
    rank = shape["hada_w1_b"][0]
    out_in = (linear.out_features, linear.in_features)
    fits = all(shape[f"hada_w{i}_a"] == (out_in[0], rank) and shape[f"hada_w{i}_b"] == (rank, out_in[1]) for i in (1, 2))
    _check(fits, source, key, f"hada_* shapes {sorted(shape.values())} do not fit {path} ({out_in[1]} -> {out_in[0]}) "
           "at one rank; pass the DiT this file is for with --model.")
    alpha = _alpha(tensors, source)
    kept = {suffix: tensors[suffix][1] for suffix in LOHA_SUFFIXES}
    kept["alpha"] = torch.tensor(float(rank if alpha is None else alpha))
    return ModulePatch(path, "loha", kept, alpha is None)


READERS = {"lora": _lora, "lokr": _lokr, "loha": _loha}


def _module_patch(path: str, module: nn.Module, tensors: dict, source: str) -> ModulePatch:
    suffixes = set(tensors)
    key = next(iter(tensors.values()))[0]
    if "b_norm" in suffixes:
        raise ConfigError(f"{source}: key {tensors['b_norm'][0]} is a bias delta; Anima's norms have no bias.")
    if isinstance(module, nn.Embedding):  # a trained trigger's rows (pivotal tuning): a LoRA kept as it is
        _check(suffixes <= {*LORA_SUFFIXES, "alpha"}, source, key, f"{path} (trigger rows) takes only a LoRA.")
        patch = _lora(path, module, tensors, source)
        return ModulePatch(path, "embedding", patch.tensors, patch.alpha_added)
    if isinstance(module, nn.Linear):
        kinds = {kind for suffix in suffixes if (kind := kind_of_suffix(suffix))}
        if "w_norm" in suffixes:
            raise ConfigError(
                f"{source}: key {tensors['w_norm'][0]} is a full-weight diff on Linear {path}; our form holds "
                "LoRA, LoKr, LoHa and norm deltas only."
            )
        _check(len(kinds) < 2, source, key, f"module {path} mixes {' and '.join(sorted(kinds))} tensors.")
        _check(bool(kinds), source, key, f"module {path} has an alpha but no weights.")
        return READERS[kinds.pop()](path, module, tensors, source)
    _check(is_norm(module) and suffixes == {"w_norm"}, source, key, f"{path} takes only a w_norm delta.")
    delta = tensors["w_norm"][1]
    _check(
        delta.shape == module.weight.shape,
        source,
        key,
        f"shape {tuple(delta.shape)}, but {path} is "
        f"{tuple(module.weight.shape)}; pass the DiT this file is for with --model.",
    )
    return ModulePatch(path, "norm", {"w_norm": delta})


def read_adapter(weights: Mapping[str, torch.Tensor], model: nn.Module, source: str) -> list[ModulePatch]:
    """Every module of `weights` in our suffixes, resolved against `model`; anything inexact raises ConfigError."""
    modules = dict(model.named_modules())
    embeddings = [path for path, module in model.named_modules() if isinstance(module, nn.Embedding)]
    grouped, unmatched = group_by_module(weights, model_paths(model) + embeddings, source)
    if unmatched:
        raise _refuse_unmatched(unmatched, source)
    if not grouped:
        raise ConfigError(f"{source}: the file holds no tensors.")
    return [_module_patch(path, modules[path], tensors, source) for path, tensors in grouped.items()]
