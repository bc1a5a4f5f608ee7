"""The `lora_unet_` form kohya's Anima networks load, for `tools/convert_anima_lora.py --to kohya`.

Reading a file, kohya's `networks/lora_anima.py` builds one module per Linear inside the classes `Block`,
`PatchEmbed`, `TimestepEmbedding`, `FinalLayer` (and `LLMAdapterTransformerBlock` when a name holds `llm_adapter`),
named `lora_unet_` + its dotted path with underscores, and loads with strict=False, so a key for any other module is
dropped without a word (adapter-files.md §5.1). Only modules kohya maps are written: norm deltas, which no kohya
network holds, and Linears outside those classes (`llm_adapter.out_proj`) are left out and reported.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from _lora_cli import cast
from _lora_read import ModulePatch

from library.errors import ConfigError

KOHYA_CLASSES = ("Block", "PatchEmbed", "TimestepEmbedding", "FinalLayer", "LLMAdapterTransformerBlock")
# what kohya loads each kind with: its LoRA module, and the LyCORIS-branch names for LoKr / LoHa
KOHYA_MODULES = {"lora": "networks.lora_anima", "lokr": "networks.lokr", "loha": "networks.loha"}


def kohya_paths(model: nn.Module) -> set[str]:
    """Dotted paths of the Linears kohya's loader can map in `model`."""
    return {f"{name}.{child}" for name, module in model.named_modules() if type(module).__name__ in KOHYA_CLASSES
            for child, sub in module.named_modules() if child and isinstance(sub, nn.Linear)}


def kohya_name(path: str) -> str:
    return "lora_unet_" + path.replace(".", "_")


def kohya_form(patches: list[ModulePatch], model: nn.Module,
               dtype: torch.dtype | None) -> tuple[dict[str, torch.Tensor], list[ModulePatch]]:
    """(the `lora_unet_` tensors, the patches left out); alpha stays a 0-dim float32 so the scale is exact."""
    mapped = kohya_paths(model)
    kept = [p for p in patches if p.kind != "norm" and p.path in mapped]
    if not kept:
        raise ConfigError("nothing in the file is a module kohya's Anima networks load (its norm deltas and Linears "
                          "outside kohya's target blocks would all be dropped); keep it in the diffusion_model. form.")
    tensors = {f"{kohya_name(p.path)}.{suffix}": tensor.to(torch.float32).reshape(()) if suffix == "alpha"
               else cast(tensor, dtype) for p in kept for suffix, tensor in p.tensors.items()}
    return tensors, [p for p in patches if p not in kept]


def kohya_module(patches: list[ModulePatch]) -> str:
    kinds = {p.kind for p in patches}
    return next((KOHYA_MODULES[k] for k in ("lokr", "loha") if k in kinds), KOHYA_MODULES["lora"])


def left_out_note(left: list[ModulePatch]) -> str:
    """What leaving `left` out changes, in one sentence per part; empty when nothing was left out."""
    norms = [p for p in left if p.kind == "norm"]
    others = [p for p in left if p.kind != "norm"]
    notes = []
    if norms:
        notes.append(f"{len(norms)} norm deltas (w_norm) left out: kohya's networks have no norm training and load "
                     "none, so with this file those norm scales stay the base model's and the result is not exactly "
                     "the trained one (ComfyUI applies them from the diffusion_model. file)")
    if others:
        notes.append(f"{len(others)} modules outside kohya's target blocks left out (e.g. {others[0].path}): kohya's "
                     "loader would drop them")
    return "; ".join(notes)
