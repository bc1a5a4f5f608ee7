"""ComfyUI's math for one module's patch (adapter-files.md §3), so merging and tests apply exactly what
ComfyUI applies to the same file: ΔW in float32, LoRA scaled by alpha / rank, LoKr by alpha / dim (dim from
`lokr_w2_b`, else `lokr_w1_b`; scale 1 when both halves are whole), LoHa by alpha / rows of `hada_w1_b`, norm deltas
unscaled."""

from __future__ import annotations

import torch
from _lora_read import ModulePatch


def comfy_scale(patch: ModulePatch) -> float:
    """The factor ComfyUI multiplies the module's raw product by (strength not included)."""
    t = patch.tensors
    if patch.kind in ("lora", "embedding"):
        return float(t["alpha"]) / t["lora_down.weight"].shape[0]
    if patch.kind == "lokr":
        dim = t["lokr_w2_b"].shape[0] if "lokr_w2_b" in t else t["lokr_w1_b"].shape[0] if "lokr_w1_b" in t else None
        return float(t["alpha"]) / dim if dim is not None else 1.0
    if patch.kind == "loha":
        return float(t["alpha"]) / t["hada_w1_b"].shape[0]
    return 1.0


def _half(t: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return t[name].float() if name in t else t[f"{name}_a"].float() @ t[f"{name}_b"].float()


def comfy_delta(patch: ModulePatch) -> torch.Tensor:
    """ΔW at strength 1 in float32, shaped like the module's weight."""
    t = patch.tensors
    if patch.kind in ("lora", "embedding"):
        raw = t["lora_up.weight"].float() @ t["lora_down.weight"].float()
    elif patch.kind == "lokr":
        raw = torch.kron(_half(t, "lokr_w1"), _half(t, "lokr_w2"))
    elif patch.kind == "loha":
        raw = (t["hada_w1_a"].float() @ t["hada_w1_b"].float()) * (t["hada_w2_a"].float() @ t["hada_w2_b"].float())
    else:
        raw = t["w_norm"].float()
    return raw * comfy_scale(patch)
