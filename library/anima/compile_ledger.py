"""Counts what `--torch_compile` compiles: each DiT block graph, by the inputs it was compiled for.

Why: a static-shape graph is compiled once per input signature (a bucket's batch shape, whether the input carries
a gradient, grad mode) and reused by all 28 blocks; a second compile of a signature already seen means some other
guard failed every step (a Python number that changes, a flag flipped per step), which silently costs a compile
per step. The ledger wraps the real backend, so it sees every compile as it happens and warns on the first repeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger(__name__)

Signature = tuple[tuple[str, tuple[int, ...], bool], ...]


def _signature(graph: torch.fx.GraphModule, example_inputs: list[Any]) -> tuple[Signature, bool]:
    """(name, shape and requires_grad of each tensor input, whether any size is symbolic: a dynamic graph)."""
    names = [node.target for node in graph.graph.nodes if node.op == "placeholder"]
    pairs = [(str(name), value) for name, value in zip(names, example_inputs, strict=False)]
    symbolic = any(not isinstance(value, torch.Tensor) for _, value in pairs) or any(
        isinstance(size, torch.SymInt) for _, value in pairs if isinstance(value, torch.Tensor) for size in value.shape)
    signature = tuple((name, tuple(size if isinstance(size, int) else -1 for size in value.shape), value.requires_grad)
                      for name, value in pairs if isinstance(value, torch.Tensor))
    return signature, symbolic


def block_input_shape(signature: Signature) -> tuple[int, ...] | None:
    """The shape of the block's token input `x` (B, tokens, width) in a compile's signature."""
    return next((shape for name, shape, _ in signature if name == "L_x_"), None)


class CompileLedger:
    """A torch.compile backend that records each compile and hands the graph to the named backend."""

    def __init__(self, backend: str, mode: str | None = None, dynamic: bool = False,
                 bucket_shapes: int | None = None) -> None:
        # the backend as torch.compile itself would wrap the name (inductor applies `mode` through its wrapper)
        self.compile = (torch._TorchCompileInductorWrapper(mode, None, dynamic) if backend == "inductor"
                        else torch._TorchCompileWrapper(backend, mode, None, dynamic))
        self.bucket_shapes = bucket_shapes
        self.compiles: list[tuple[Signature, bool, bool]] = []  # (signature, grad mode, dynamic)
        self.repeats = 0

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        signature, dynamic = _signature(graph, example_inputs)
        entry = (signature, torch.is_grad_enabled(), dynamic)
        if entry in self.compiles:
            self.repeats += 1
            logger.warning(
                "torch.compile compiled a DiT block again for inputs it has a graph for (compile %d): a guard other "
                "than the shapes failed, and it may fail every step. Run with TORCH_LOGS=recompiles to see which.",
                len(self.compiles) + 1)
        self.compiles.append(entry)
        logger.info("torch.compile: DiT block graph %d compiled for block input %s%s (%s bucket shapes)",
                    len(self.compiles), "dynamic" if dynamic else block_input_shape(signature),
                    "" if entry[1] else ", no grad",
                    self.bucket_shapes if self.bucket_shapes is not None else "?")
        return self.compile(graph, example_inputs)
