"""`--torch_compile`: compile each DiT `Block` on its own, not the whole model.

Why per block: the 28 blocks share one graph (compiled once, reused), the loop, block swap and checkpointing
stay in eager Python, and LoRA's wrapped Linear forwards are traced inside the block. Shapes are static: each
bucket's batch shape compiles once (pitfalls.md item 13: a recompile per bucket shape, the price of kernels
specialised to it) and every later batch of that bucket reuses it, so dynamo's cache is sized to the dataset's
bucket shapes; `--torch_compile_dynamic` compiles one graph for every shape instead (for datasets with many
buckets; on Windows it needs MSVC). The gain is smaller under block swap, and inductor needs Triton.
"""

from __future__ import annotations

import logging

from torch import nn

from library.anima.compile_ledger import CompileLedger
from library.errors import ConfigError

logger = logging.getLogger(__name__)

# Graphs per bucket shape: training compiles the first block apart (its input carries no gradient) and the rest;
# validation and sampling run without gradients (one more), plus room for the sample images' own shapes.
_GRAPHS_PER_SHAPE, _SPARE_GRAPHS = 3, 8

# CUDA graphs replay fixed weight addresses, which block swap changes every step.
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def check_dynamo_backend(backend: str) -> None:
    """The start-up check (also run by `compile_blocks`): `backend` is one torch.compile knows here."""
    import torch._dynamo  # only when --torch_compile asks for it: importing dynamo takes a second

    backends = torch._dynamo.list_backends(exclude_tags=())
    if backend not in backends:
        raise ConfigError(f"--dynamo_backend {backend!r} is not a torch.compile backend here; use one of {backends}.")


def compile_blocks(model: nn.Module, backend: str = "inductor", mode: str | None = None, dynamic: bool = False,
                   bucket_shapes: int | None = None) -> CompileLedger:
    """`torch.compile` every module of `model.blocks` in place (`nn.Module.compile`); returns the ledger that
    counts the compiles (`library/anima/compile_ledger.py`).

    Call after fp8 and after the network is applied (tracing happens at the first forward, so the order only
    matters for what is traced) and after `enable_block_swap`, which this checks the mode against.
    `bucket_shapes`: how many batch shapes the dataset has; dynamo's cache per block graph is raised to hold a
    static graph for each.
    """
    check_dynamo_backend(backend)
    if getattr(model, "block_hooks", None) is not None and mode in _CUDA_GRAPH_MODES:
        raise ConfigError(
            f"torch.compile mode {mode!r} uses CUDA graphs, which cannot follow --blocks_to_swap's moving "
            "weights; use the default mode or drop --blocks_to_swap."
        )
    import torch._dynamo

    if not dynamic and bucket_shapes:
        needed = _GRAPHS_PER_SHAPE * bucket_shapes + _SPARE_GRAPHS
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, needed)
        logger.info("torch.compile: %d bucket shapes, each compiled once per kind of call (up to %d block graphs)",
                    bucket_shapes, needed)
    ledger = CompileLedger(backend, mode, dynamic, bucket_shapes)
    for block in model.blocks:
        block.compile(backend=ledger, dynamic=dynamic)
    return ledger
