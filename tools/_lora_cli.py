"""What the three LoRA tools share on the command line: precision names, our file form, exit on `UserError`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import torch
from _lora_read import ModulePatch

from library.atomic import save_safetensors_atomic
from library.errors import ConfigError, UserError
from networks._keys import ADAPTER_KINDS, file_key

PRECISIONS = {"float": torch.float32, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def precision(name: str | None) -> torch.dtype | None:
    """The dtype for a `--dtype` / `--save_precision` name; None keeps each tensor's own dtype."""
    return None if name is None else PRECISIONS[name]


def cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return (tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor).contiguous()


def our_form(patches: list[ModulePatch], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """`diffusion_model.<path>.<suffix>` tensors. Alpha stays a 0-dim float32 whatever `dtype` is, so the
    scale alpha / rank is exactly the source's (a bf16 alpha could round it)."""
    return {
        file_key(p.path, suffix): tensor.to(torch.float32).reshape(()) if suffix == "alpha" else cast(tensor, dtype)
        for p in patches
        for suffix, tensor in p.tensors.items()
    }


def network_module(patches: list[ModulePatch]) -> str:
    """The `--network_module` that loads these patches."""
    kinds = {p.kind for p in patches}
    return next((ADAPTER_KINDS[k].module for k in ("lokr", "loha") if k in kinds), ADAPTER_KINDS["lora"].module)


def save_adapter(tensors: dict[str, torch.Tensor], output: str | os.PathLike, metadata: dict[str, str]) -> None:
    if not str(output).endswith(".safetensors"):
        raise ConfigError(f"--output {output}: write a .safetensors file (ComfyUI loads those).")
    save_safetensors_atomic(tensors, output, metadata)


def exit_code(action: Callable[[], None]) -> int:
    """Run a tool's work: 0 when done, 2 after printing a `UserError` as one line instead of a traceback."""
    try:
        action()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
