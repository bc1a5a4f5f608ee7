"""`[lora]` of a root-style file -> `network_module`, `network_dim`, `network_alpha`, `network_args`.

Our networks take kohya's `include_patterns` / `exclude_patterns` (regexes, full match) instead of the seed
project's `target_modules`, so `lora_targets` is rewritten into regexes with the same matching rules.
"""

from __future__ import annotations

import fnmatch
import re

from _root_mapping import Section

NETWORK_MODULES = {"lora": "networks.lora_anima", "lokr": "networks.lokr_anima"}
LOKR_ONLY = ("lokr_factor", "lokr_full_matrix", "lokr_decompose_both", "lokr_rank_dropout", "lokr_module_dropout",
             "lokr_use_tucker", "lokr_constraint", "lokr_normalize")
DEFAULT_PRESET = "v101"  # the old default target set: attention + MLP Linears, as our networks' default


def target_regex(item: str) -> str:
    """One `lora_targets` entry -> a full-match regex: `re:X` searches X, globs are globs, a name (or dotted
    suffix) matches that module name anywhere; a leading `transformer.` was the old model's prefix."""
    item = item.strip()
    if item.startswith("re:"):
        return f".*(?:{item[3:]}).*"
    item = item.removeprefix("transformer.")
    if any(ch in item for ch in "*?["):
        return fnmatch.translate(item).removeprefix("(?s:").removesuffix(")\\Z")
    return rf"(?:.*\.)?{re.escape(item)}"


def _targets(section: Section, network_args: list[str]) -> None:
    value = section.get("lora_targets")
    if value is None:
        return
    items = value if isinstance(value, list) else str(value).split(",")
    regexes = [target_regex(str(item)) for item in items if str(item).strip()]
    if regexes:
        # include wins over exclude: exactly the listed modules are wrapped, as with the old target list.
        network_args += [f"include_patterns={regexes!r}", "exclude_patterns=['.*']"]


def _lokr(section: Section, network_args: list[str]) -> None:
    factor = section.value("lokr_factor", int, "factor")
    if factor is not None:
        network_args.append(f"factor={factor}")
    for key, arg in (("lokr_full_matrix", "full_matrix"), ("lokr_decompose_both", "decompose_both")):
        if section.value(key, bool, arg):
            network_args.append(f"{arg}=true")
    for key, arg in (("lokr_rank_dropout", "rank_dropout"), ("lokr_module_dropout", "module_dropout")):
        rate = section.value(key, float, arg)
        if rate:
            network_args.append(f"{arg}={rate}")
    if section.value("lokr_use_tucker", bool):
        section.conv.skip(section.key("lokr_use_tucker"), "Tucker decomposition applies to convolutions only; "
                          "Anima's adapters wrap Linear layers, so it had no effect")
    if section.value("lokr_constraint", float):
        section.conv.skip(section.key("lokr_constraint"), "LoKr weight constraints are not implemented here")
    if section.value("lokr_normalize", bool):
        section.conv.skip(section.key("lokr_normalize"), "LoKr weight normalisation is not implemented here")


def map_lora(section: Section) -> None:
    conv, args = section.conv, section.conv.train_args
    kind = str(section.get("network_type", "lora")).strip().lower()
    if kind not in NETWORK_MODULES:
        conv.skip(section.key("network_type"), f"unknown type {kind!r} (lora or lokr); LoRA is used")
        kind = "lora"
    args["network_module"] = NETWORK_MODULES[kind]
    args["network_dim"] = section.value("lora_rank", int, "network_dim", 32)
    args["network_alpha"] = section.value("lora_alpha", float, "network_alpha", 16.0)
    dropout = section.value("lora_dropout", float, "network_dropout")
    if dropout and kind == "lokr":
        conv.skip(section.key("lora_dropout"), "LoKr has no neuron dropout; use lokr_rank_dropout instead")
    elif dropout:
        args["network_dropout"] = dropout
    _targets(section, conv.network_args)
    preset = section.get("anima_target_preset")
    if preset is not None and str(preset).lower() != DEFAULT_PRESET:
        conv.skip(section.key("anima_target_preset"), f"only the {DEFAULT_PRESET} target set exists here (the "
                  "networks' default); list other modules in lora_targets")
    if kind == "lokr":
        _lokr(section, conv.network_args)
    else:
        for key in LOKR_ONLY:
            if section.has(key):
                conv.skip(section.key(key), "only used with network_type = \"lokr\"")
    section.get("lora_name")  # read by the [output] mapper as the output_name fallback
