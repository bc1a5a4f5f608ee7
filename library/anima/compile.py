"""`--torch_compile`: compile each DiT `Block` on its own, not the whole model.

Why per block: the 28 blocks share one graph (compiled once, reused), the loop, block swap and checkpointing
stay in eager Python, and LoRA's wrapped Linear forwards are traced inside the block. Shapes are compiled
dynamic so a new bucket (another token count) does not recompile (pitfalls.md item 13); the gain is smaller
under block swap, and inductor needs Triton (on Windows also MSVC).
"""

from __future__ import annotations

from torch import nn

from library.errors import ConfigError

# CUDA graphs replay fixed weight addresses, which block swap changes every step.
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def check_dynamo_backend(backend: str) -> None:
    """The start-up check (also run by `compile_blocks`): `backend` is one torch.compile knows here."""
    import torch._dynamo  # only when --torch_compile asks for it: importing dynamo takes a second

    backends = torch._dynamo.list_backends(exclude_tags=())
    if backend not in backends:
        raise ConfigError(f"--dynamo_backend {backend!r} is not a torch.compile backend here; use one of {backends}.")


def compile_blocks(model: nn.Module, backend: str = "inductor", mode: str | None = None) -> int:
    """`torch.compile` every module of `model.blocks` in place (`nn.Module.compile`); returns how many.

    Call after fp8 and after the network is applied (tracing happens at the first forward, so the order only
    matters for what is traced) and after `enable_block_swap`, which this checks the mode against.
    """
    check_dynamo_backend(backend)
    if getattr(model, "block_hooks", None) is not None and mode in _CUDA_GRAPH_MODES:
        raise ConfigError(
            f"torch.compile mode {mode!r} uses CUDA graphs, which cannot follow --blocks_to_swap's moving "
            "weights; use the default mode or drop --blocks_to_swap."
        )
    for block in model.blocks:
        block.compile(backend=backend, mode=mode, dynamic=True)
    return len(model.blocks)
