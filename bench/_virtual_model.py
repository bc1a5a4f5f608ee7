"""Random-weight models built in memory, straight on the device, for bench/gpu_bench.py: the 2B DiT (and the
Qwen3-0.6B that caches the caption) without writing and reading back a 4-8 GB file.

The trainer still runs its own path from the command line on: the tiny model folder gives it real files to name
and check (VAE, tokenizers, the DiT's header), and `install` swaps in only the weight loading. `load_anima_dit`
returns the chosen configuration with random weights, `inspect_dit_file` reports that configuration (so block
swap is checked against 28 blocks, not the tiny file's 2), and `load_qwen3` returns a random Qwen3 as wide as the
DiT's adapter reads. Everything else (fp8, LoRA, checkpointing, block swap, compile, caching, the loop) is the
trainer's.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import torch
from make_tiny_anima import real2b, tiny
from transformers import Qwen3Config, Qwen3Model

import library.anima.loading as loading
import library.anima.qwen3 as qwen3
from library.anima.dit_header import DiTFileInfo
from library.anima.model import AnimaConfig, AnimaDiT

DRY_BLOCKS = 4  # the dry run's DiT: the tiny widths with enough blocks to swap two


def configs(size: str) -> tuple[AnimaConfig, Qwen3Config]:
    """The DiT and Qwen3 configurations: `real2b` the released shapes, `tiny` the tiny widths with 4 blocks."""
    if size == "real2b":
        chosen = real2b()
        return chosen.dit, chosen.qwen
    chosen = tiny()
    return dataclasses.replace(chosen.dit, num_blocks=DRY_BLOCKS), chosen.qwen


def fill_random(module: torch.nn.Module, seed: int = 0) -> None:
    """Weights N(0, 0.02), biases 0, norm scales 1: finite activations through every block in bf16."""
    gen = torch.Generator(device=next(module.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if not tensor.is_floating_point():
                continue
            if name.endswith("bias"):
                tensor.zero_()
            elif tensor.dim() == 1:
                tensor.fill_(1.0)
            else:
                tensor.normal_(0.0, 0.02, generator=gen)


def build(make: Callable[[], torch.nn.Module], dtype: torch.dtype, device: torch.device | str) -> torch.nn.Module:
    """Construct on the meta device (no memory, no init), give it storage on `device`, fill it there."""
    with torch.device("meta"):
        module = make()
    module = module.to_empty(device=device).to(dtype)
    fill_random(module)
    return module


def _rebind(name: str, original: Any, replacement: Any) -> None:
    """Every loaded module that holds `original` under `name` gets `replacement` (from-imports included)."""
    for module in list(sys.modules.values()):
        if getattr(module, name, None) is original:
            setattr(module, name, replacement)


def install(size: str, target: torch.device, dtype: torch.dtype) -> Callable[[], torch.nn.Module]:
    """Patch the trainer's weight loading for `size`; returns the bare loop's DiT maker (the same model)."""
    import library.anima.network_trainer  # noqa: F401  (loaded first, so its imported names are rebound too)

    dit_config, qwen_config = configs(size)
    real_inspect, real_load_dit, real_load_qwen = loading.inspect_dit_file, loading.load_anima_dit, qwen3.load_qwen3

    def inspect(path: Any, strict: bool = True) -> DiTFileInfo:
        info = real_inspect(path, strict)
        return dataclasses.replace(info, config=dit_config, num_blocks=dit_config.num_blocks)

    def load_dit(path: Any, dtype: torch.dtype = torch.float32, device: Any = "cpu") -> AnimaDiT:
        """Straight on the bench's device, whatever the trainer asks (it loads to the CPU, then moves)."""
        return build(lambda: AnimaDiT(dit_config), dtype, target).requires_grad_(False)

    def load_qwen(path: Any, dtype: torch.dtype = torch.float32, device: Any = "cpu") -> Qwen3Model:
        return build(lambda: Qwen3Model(qwen_config), dtype, device).eval().requires_grad_(False)

    _rebind("inspect_dit_file", real_inspect, inspect)
    _rebind("load_anima_dit", real_load_dit, load_dit)
    _rebind("load_qwen3", real_load_qwen, load_qwen)
    return lambda: build(lambda: AnimaDiT(dit_config), dtype, target)
