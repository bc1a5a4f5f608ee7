"""ComfyUI's rules for applying an adapter file to Anima, rewritten from adapter-files.md §2-3 (no code copied).

Only the `diffusion_model.<path>` form is mapped here, which is what we write; a key that ComfyUI would not
consume makes `comfy_patch` fail, so a test using it also checks that ComfyUI loads the file unchanged.
"""

from __future__ import annotations

import torch

_SUFFIXES = (
    "lora_up.weight",
    "lora_down.weight",
    "lora_A.weight",
    "lora_B.weight",
    "alpha",
    "lokr_w1",
    "lokr_w1_a",
    "lokr_w1_b",
    "lokr_w2",
    "lokr_w2_a",
    "lokr_w2_b",
    "hada_w1_a",
    "hada_w1_b",
    "hada_w2_a",
    "hada_w2_b",
    "dora_scale",
    "w_norm",
    "diff",
)


def _group(file_sd: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in file_sd.items():
        suffix = next((s for s in _SUFFIXES if key.endswith("." + s)), None)
        assert suffix is not None and key.startswith("diffusion_model."), f"lora key not loaded: {key}"
        groups.setdefault(key[: -len(suffix) - 1], {})[suffix] = tensor.float()
    return groups


def comfy_delta(parts: dict[str, torch.Tensor], shape: torch.Size) -> torch.Tensor:
    alpha = float(parts["alpha"]) if "alpha" in parts else None
    if "w_norm" in parts or "diff" in parts:
        return parts.get("w_norm", parts.get("diff"))
    if "lora_up.weight" in parts or "lora_B.weight" in parts:
        up = parts.get("lora_up.weight", parts.get("lora_B.weight"))
        down = parts.get("lora_down.weight", parts.get("lora_A.weight"))
        factor = alpha / down.shape[0] if alpha is not None else 1.0
        return (up @ down).reshape(shape) * factor
    if "hada_w1_a" in parts:
        factor = alpha / parts["hada_w1_b"].shape[0] if alpha is not None else 1.0
        hadamard = (parts["hada_w1_a"] @ parts["hada_w1_b"]) * (parts["hada_w2_a"] @ parts["hada_w2_b"])
        return hadamard.reshape(shape) * factor
    dim = None
    w1 = parts.get("lokr_w1")
    if w1 is None:
        w1 = parts["lokr_w1_a"] @ parts["lokr_w1_b"]
        dim = parts["lokr_w1_b"].shape[0]
    w2 = parts.get("lokr_w2")
    if w2 is None:
        w2 = parts["lokr_w2_a"] @ parts["lokr_w2_b"]
        dim = parts["lokr_w2_b"].shape[0]
    scale = alpha / dim if (alpha is not None and dim is not None) else 1.0
    return torch.kron(w1, w2).reshape(shape) * scale


def comfy_patch(model_sd: dict[str, torch.Tensor], file_sd: dict[str, torch.Tensor], strength: float = 1.0) -> dict:
    """The model state dict with every patch of the file applied at `strength`."""
    patched = {k: v.clone() for k, v in model_sd.items()}
    for name, parts in _group(file_sd).items():
        target = name.removeprefix("diffusion_model.") + ".weight"
        assert target in patched, f"NOT LOADED {name}"
        weight = patched[target]
        delta = comfy_delta(parts, weight.shape)
        if "dora_scale" in parts:
            delta = dora_weight(weight.float(), delta, parts["dora_scale"]) - weight.float()
        patched[target] = (weight.float() + strength * delta).to(weight.dtype)
    return patched


def dora_weight(weight: torch.Tensor, delta: torch.Tensor, dora_scale: torch.Tensor) -> torch.Tensor:
    """ComfyUI's `weight_decompose` at strength 1: (W + ΔW) · dora_scale / norm. A dora_scale with one row per
    output divides by the norm of the original W's rows (ComfyUI's behaviour, adapter-files.md §9); otherwise by
    the norm of each input column of W + ΔW."""
    adapted = weight + delta
    if tuple(dora_scale.shape) == (weight.shape[0], 1):
        norm = weight.norm(dim=1, keepdim=True)
    else:
        norm = adapted.norm(dim=0, keepdim=True)
    return adapted * (dora_scale / norm)
