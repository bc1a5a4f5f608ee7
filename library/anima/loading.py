"""Read and write Anima DiT checkpoint files (`*.safetensors`, DiT + `llm_adapter` in one file).

The file is checked from its header first (`dit_header.py`). Loading builds the model on the meta device and
assigns each tensor as it is converted, so two full copies of the weights never exist.
"""

from __future__ import annotations

import os

import torch
from safetensors import safe_open
from torch import nn

from library.anima.dit_header import PREFIXES, ROPE_BUFFERS, inspect_dit_file
from library.anima.model import AnimaDiT
from library.atomic import save_safetensors_atomic


def load_anima_dit(
    path: str | os.PathLike, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> AnimaDiT:
    """Load a DiT file into an `AnimaDiT` in `dtype` on `device`, one tensor at a time, strictly."""
    info = inspect_dit_file(path)
    with torch.device("meta"):
        model = AnimaDiT(info.config)
    state_dict = {}
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        names = handle.keys()  # a safe_open handle is not iterable
        for key in names:
            name = key[len(info.prefix) :]
            if name not in ROPE_BUFFERS:
                state_dict[name] = handle.get_tensor(key).to(device=device, dtype=dtype)
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model


def save_anima_dit(
    model_or_state_dict: nn.Module | dict[str, torch.Tensor],
    path: str | os.PathLike,
    prefix: str = "net.",
    dtype: torch.dtype | None = None,
) -> None:
    """Write the official layout (`net.` keys by default, no buffers) atomically, optionally cast to `dtype`."""
    if prefix not in PREFIXES:
        raise ValueError(f"prefix must be one of {PREFIXES}, not {prefix!r}")
    if isinstance(model_or_state_dict, nn.Module):
        buffers = {name for name, _ in model_or_state_dict.named_buffers()}
        items = {k: v for k, v in model_or_state_dict.state_dict().items() if k not in buffers}
    else:
        items = dict(model_or_state_dict)
    tensors = {
        prefix + name: (value.to(dtype) if dtype is not None else value).detach().cpu()
        for name, value in items.items()
        if name not in ROPE_BUFFERS
    }
    save_safetensors_atomic(tensors, path, metadata={"format": "pt"})
