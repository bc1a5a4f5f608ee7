"""Current and peak accelerator memory for the monitor page, where the device reports them (CUDA, MPS)."""

from __future__ import annotations

from typing import Any

import torch

GIB = 2**30


def memory_figures(device: Any) -> dict[str, float] | None:
    """{"current_gib", "peak_gib"} (peak only where the device tracks one), or None on the CPU."""
    kind = getattr(device, "type", str(device))
    if kind == "cuda" and torch.cuda.is_available():
        return {"current_gib": torch.cuda.memory_allocated(device) / GIB,
                "peak_gib": torch.cuda.max_memory_allocated(device) / GIB}
    if kind == "mps" and hasattr(torch, "mps"):
        return {"current_gib": torch.mps.current_allocated_memory() / GIB}
    return None
