"""Tensor key names: the one form we write and every foreign form `--network_weights` reads.

We write `diffusion_model.<dotted module path>.<suffix>`, which ComfyUI maps for Anima with no conversion
(adapter-files.md §2.1, §10 item 1), and a Qwen3 text-encoder LoRA as kohya does, `lora_te_<path with _>.<suffix>`. Reading, a module is found the way ComfyUI finds it: every name a
module can have is generated from the model's own module paths (`lora_unet_` with underscores, `lycoris_`,
`diffusion_model.`, a bare path, diffusers' `transformer.` / `text_conditioner.` names), so underscores are
never guessed back into dots. Suffix spellings (peft `lora_A`/`lora_B`, `.default`, `diff`) are folded onto
ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from library.errors import ConfigError

PREFIX = "diffusion_model."
# A text-encoder adapter's path in the network: this prefix + its path in the Qwen3 model. Written as kohya writes it,
# `lora_te_<path with _>`, which ComfyUI maps for Anima's Qwen3 (adapter-files.md §2); also read: LyCORIS's
# `lora_te1_` and kohya's ComfyUI converter's `text_encoders.qwen3_06b.transformer.model.<path>`.
TEXT_ENCODER_PREFIX = "lora_te."
_TEXT_ENCODER_NAMES = ("lora_te_{flat}", "lora_te1_{flat}", "text_encoders.qwen3_06b.transformer.model.{path}",
                       "text_encoders.transformer.model.{path}")

# canonical suffix for every spelling we read (adapter-files.md §2.2 and §10 item 5)
SUFFIXES = {
    "lora_down.weight": "lora_down.weight",
    "lora_A.weight": "lora_down.weight",
    "lora_up.weight": "lora_up.weight",
    "lora_B.weight": "lora_up.weight",
    "alpha": "alpha",
    "lokr_w1": "lokr_w1",
    "lokr_w1_a": "lokr_w1_a",
    "lokr_w1_b": "lokr_w1_b",
    "lokr_w2": "lokr_w2",
    "lokr_w2_a": "lokr_w2_a",
    "lokr_w2_b": "lokr_w2_b",
    "hada_w1_a": "hada_w1_a",
    "hada_w1_b": "hada_w1_b",
    "hada_w2_a": "hada_w2_a",
    "hada_w2_b": "hada_w2_b",
    "w_norm": "w_norm",
    "diff": "w_norm",
    "b_norm": "b_norm",
    "diff_b": "b_norm",
}
LORA_SUFFIXES = ("lora_down.weight", "lora_up.weight")
LOKR_SUFFIXES = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b")
LOHA_SUFFIXES = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
NORM_SUFFIXES = ("w_norm", "b_norm")


@dataclass(frozen=True)
class AdapterKind:
    """One kind of Linear adapter our networks train: its name in messages, its network module, its tensors."""

    label: str
    module: str
    suffixes: tuple[str, ...]


ADAPTER_KINDS = {
    "lora": AdapterKind("LoRA", "networks.lora_anima", LORA_SUFFIXES),
    "lokr": AdapterKind("LoKr", "networks.lokr_anima", LOKR_SUFFIXES),
    "loha": AdapterKind("LoHa", "networks.loha_anima", LOHA_SUFFIXES),
}


def kind_of_suffix(suffix: str) -> str | None:
    """The adapter kind a (canonical) suffix belongs to; None for alpha and norm deltas."""
    return next((kind for kind, spec in ADAPTER_KINDS.items() if suffix in spec.suffixes), None)

# diffusers 0.42.1 `_convert_non_diffusers_anima_lora_to_diffusers`: applied in this order to DiT paths
_DIFFUSERS_RENAMES = (
    ("blocks.", "transformer_blocks."),
    ("adaln_modulation_self_attn.1", "norm1.linear_1"),
    ("adaln_modulation_self_attn.2", "norm1.linear_2"),
    ("adaln_modulation_cross_attn.1", "norm2.linear_1"),
    ("adaln_modulation_cross_attn.2", "norm2.linear_2"),
    ("adaln_modulation_mlp.1", "norm3.linear_1"),
    ("adaln_modulation_mlp.2", "norm3.linear_2"),
    ("self_attn.q_proj", "attn1.to_q"),
    ("self_attn.k_proj", "attn1.to_k"),
    ("self_attn.v_proj", "attn1.to_v"),
    ("self_attn.output_proj", "attn1.to_out.0"),
    ("cross_attn.q_proj", "attn2.to_q"),
    ("cross_attn.k_proj", "attn2.to_k"),
    ("cross_attn.v_proj", "attn2.to_v"),
    ("cross_attn.output_proj", "attn2.to_out.0"),
    ("mlp.layer1", "ff.net.0.proj"),
    ("mlp.layer2", "ff.net.2"),
    ("final_layer.adaln_modulation.1", "norm_out.linear_1"),
    ("final_layer.adaln_modulation.2", "norm_out.linear_2"),
    ("final_layer.linear", "proj_out"),
    ("t_embedder.1", "time_embed.t_embedder"),
    ("t_embedding_norm", "time_embed.norm"),
    ("x_embedder.proj.1", "patch_embed.proj"),
)


def is_text_encoder_key(key: str) -> bool:
    """A file key that addresses a text-encoder module, in any form we read."""
    return key.startswith(("lora_te_", "lora_te1_", "text_encoders."))


def is_text_encoder_path(path: str) -> bool:
    return path.startswith(TEXT_ENCODER_PREFIX)


def text_encoder_path(path: str) -> str:
    """A text-encoder adapter's path in the Qwen3 model (kohya's `original_name`)."""
    return path.removeprefix(TEXT_ENCODER_PREFIX)


def file_key(path: str, suffix: str) -> str:
    """The key we write for module `path` (relative to the DiT, or a text-encoder path) and a canonical suffix."""
    if is_text_encoder_path(path):
        return f"{path.replace('.', '_')}.{suffix}"
    return f"{PREFIX}{path}.{suffix}"


def diffusers_name(path: str) -> str:
    if path.startswith("llm_adapter."):
        return "text_conditioner." + path.removeprefix("llm_adapter.")
    for old, new in _DIFFUSERS_RENAMES:
        path = path.replace(old, new)
    return "transformer." + path


def module_names(path: str) -> list[str]:
    """Every name under which a file may address module `path`."""
    if is_text_encoder_path(path):
        inner = text_encoder_path(path)
        return [name.format(flat=inner.replace(".", "_"), path=inner) for name in _TEXT_ENCODER_NAMES]
    flat = path.replace(".", "_")  # bare: the network's own module names, as in a state folder's model.safetensors
    return [PREFIX + path, path, f"lora_unet_{flat}", f"lycoris_{flat}", flat, diffusers_name(path)]


def build_index(paths: Iterable[str]) -> dict[str, str]:
    index: dict[str, str] = {}
    for path in paths:
        for name in module_names(path):
            index.setdefault(name, path)
    return index


def split_key(key: str) -> tuple[str, str] | None:
    """(module name, canonical suffix), with peft's `.default` infix dropped; None for an unknown suffix."""
    clean = key.replace(".default.", ".").removesuffix(".default")
    for spelling, canonical in SUFFIXES.items():
        if clean.endswith("." + spelling):
            return clean[: -len(spelling) - 1], canonical
    return None


def group_by_module(
    weights: Mapping[str, torch.Tensor], paths: Iterable[str], source: str = "the adapter file"
) -> tuple[dict[str, dict[str, tuple[str, torch.Tensor]]], list[str]]:
    """Group a file's tensors per model module: {path: {suffix: (file key, tensor)}}, plus unmatched keys.

    Two keys that address the same tensor (e.g. a `lora_unet_` and a `diffusion_model.` spelling) are an error:
    silently keeping one would load a different adapter than the file's author meant."""
    index = build_index(paths)
    grouped: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    unmatched = []
    for key, tensor in weights.items():
        parts = split_key(key)
        path = index.get(parts[0]) if parts else None
        if path is None:
            unmatched.append(key)
            continue
        slot = grouped.setdefault(path, {})
        if parts[1] in slot:
            raise ConfigError(f"{source}: keys {slot[parts[1]][0]} and {key} both address {path}.{parts[1]}.")
        slot[parts[1]] = (key, tensor)
    return grouped, unmatched
