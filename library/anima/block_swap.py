"""`--blocks_to_swap N`: keep N DiT blocks' weights off the GPU and bring them in just ahead of use.

kohya's schedule (sd-scripts `custom_offloading_utils`), with M = num_blocks - N blocks resident at a time:
* start of a step: blocks 0..M-1 resident, M..num-1 parked;
* forward, after block i < N: park i, start bringing M + i (it is needed M blocks later);
* backward, once block i's output gradient exists (block i+1 is done): make sure block i is in, then park i + 2
  (one block of margin: block i+1's last weight-using nodes may still be queued) and start bringing i + 2 - M.
The backward ends in the starting layout, so a step needs no trainer call. A forward that had no backward
(sampling under `no_grad`) leaves another layout; the next forward restores the start layout first.

Unlike kohya, the frozen weights never travel back: each swapped tensor keeps a CPU master copy (pinned on CUDA)
and parking just drops the GPU copy. That halves PCIe traffic and costs host RAM for up to 2N blocks (pinned
memory, see pitfalls.md item 15). Parked weights must not be trained, so every swapped tensor must be frozen.
On CUDA, copies run on a side stream and the compute stream waits on an event per block; on any other device
the same bookkeeping runs with synchronous moves (a no-op when the compute device is the offload device).
Without gradient checkpointing autograd keeps the weights a block used alive until backward, so the saving
comes with `--gradient_checkpointing`.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import torch
from torch import nn

from library.errors import ConfigError


class _State(Enum):
    RESIDENT = "resident"
    IN_FLIGHT = "in flight"
    PARKED = "parked"


def validate_blocks_to_swap(blocks_to_swap: int, num_blocks: int) -> None:
    """N must leave two blocks on the GPU: the backward holds the block it runs and the one it just finished."""
    limit = num_blocks - 2
    if blocks_to_swap < 0 or blocks_to_swap > limit:
        raise ConfigError(
            f"--blocks_to_swap {blocks_to_swap} is out of range: this DiT has {num_blocks} blocks, so it must be "
            f"between 0 and {limit} (two blocks stay on the GPU). Use --blocks_to_swap {max(limit, 0)} or less."
        )


class _OnBackward(torch.autograd.Function):
    """Identity whose backward runs a callback: the moment the gradient of a block's output is complete."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, callback: Callable[[], None]) -> torch.Tensor:
        ctx.callback = callback
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        ctx.callback()
        return grad, None


class BlockSwap:
    """Moves the weights of `blocks` between `offload_device` and `compute_device` around each block's use.

    The DiT calls `before_block` / `after_block` around every block (`AnimaDiT.block_hooks`). `_fetch` and
    `_parked` are the two transfers; a test may override them to make stale weights visible.
    """

    def __init__(
        self,
        blocks: nn.ModuleList,
        blocks_to_swap: int,
        compute_device: torch.device | str,
        offload_device: torch.device | str = "cpu",
    ) -> None:
        self.blocks = list(blocks)
        self.num_blocks = len(self.blocks)
        validate_blocks_to_swap(blocks_to_swap, self.num_blocks)
        self.num_swap = blocks_to_swap
        self.num_resident = self.num_blocks - blocks_to_swap
        self.compute_device = torch.device(compute_device)
        self.offload_device = torch.device(offload_device)
        self.misses = 0  # blocks that were needed before a prefetch was issued (a schedule bug if > 0)
        cuda = self.compute_device.type == "cuda"
        self._copy_stream = torch.cuda.Stream(self.compute_device) if cuda else None
        self._compute_stream = torch.cuda.current_stream(self.compute_device) if cuda else None
        self._events: dict[int, torch.cuda.Event] = {}
        swapped = sorted(set(range(blocks_to_swap)) | set(range(self.num_resident, self.num_blocks)))
        self._tensors: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for index in swapped:
            pairs = []
            for name, tensor in [*self.blocks[index].named_parameters(), *self.blocks[index].named_buffers()]:
                if tensor.requires_grad:
                    raise RuntimeError(
                        f"block swap needs frozen blocks, but blocks.{index}.{name} requires grad; "
                        "call requires_grad_(False) on the DiT before enable_block_swap"
                    )
                master = tensor.detach().to(self.offload_device)
                pairs.append((tensor, master.pin_memory() if cuda and master.device.type == "cpu" else master))
            self._tensors[index] = pairs
        self._state = {index: _State.PARKED for index in swapped}
        for index in swapped:
            self._set(index, [self._parked(master) for _tensor, master in self._tensors[index]])
        self._restore_start_layout()

    # ---- transfers (overridable) ---------------------------------------------------------------------------
    def _fetch(self, master: torch.Tensor) -> torch.Tensor:
        """A compute-device copy of a master tensor (on CUDA: issued on the copy stream)."""
        return master.to(self.compute_device, non_blocking=True)

    def _parked(self, master: torch.Tensor) -> torch.Tensor:
        """What a parked tensor holds: the master itself, so nothing is copied back."""
        return master

    # ---- bookkeeping ---------------------------------------------------------------------------------------
    def _set(self, index: int, values: list[torch.Tensor]) -> None:
        for (tensor, _master), value in zip(self._tensors[index], values, strict=True):
            tensor.data = value

    def _bring(self, index: int) -> None:
        """Start moving a parked block in (asynchronously on CUDA)."""
        if self._state.get(index, _State.RESIDENT) is not _State.PARKED:
            return
        if self._copy_stream is None:
            self._set(index, [self._fetch(master) for _tensor, master in self._tensors[index]])
            self._state[index] = _State.RESIDENT
            return
        with torch.cuda.stream(self._copy_stream):
            values = [self._fetch(master) for _tensor, master in self._tensors[index]]
            for value in values:
                value.record_stream(self._compute_stream)  # freed memory waits for the compute stream's use
            event = torch.cuda.Event()
            event.record(self._copy_stream)
        self._set(index, values)
        self._events[index] = event
        self._state[index] = _State.IN_FLIGHT

    def _wait(self, index: int) -> None:
        """Make the compute stream wait until the block is in; a block not even requested is a miss."""
        state = self._state.get(index, _State.RESIDENT)
        if state is _State.PARKED:
            self.misses += 1
            self._bring(index)
        if index in self._events:
            self._compute_stream.wait_event(self._events.pop(index))
        if index in self._state:
            self._state[index] = _State.RESIDENT

    def _park(self, index: int) -> None:
        if self._state.get(index, _State.PARKED) is _State.PARKED:
            return
        self._events.pop(index, None)
        self._set(index, [self._parked(master) for _tensor, master in self._tensors[index]])
        self._state[index] = _State.PARKED

    def _restore_start_layout(self) -> None:
        """Blocks 0..M-1 in, the rest parked (parks first, so the memory is free for the copies)."""
        for index in self._tensors:
            if index >= self.num_resident:
                self._park(index)
        for index in self._tensors:
            if index < self.num_resident:
                self._bring(index)

    def resident(self) -> list[int]:
        """Indices of blocks whose weights are (or are being brought) on the compute device."""
        return [i for i in range(self.num_blocks) if self._state.get(i, _State.RESIDENT) is not _State.PARKED]

    # ---- the DiT's hooks -----------------------------------------------------------------------------------
    def before_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        if index == 0:
            self._restore_start_layout()
        self._wait(index)
        return tokens

    def after_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        if index < self.num_swap:
            self._park(index)
            self._bring(self.num_resident + index)
        if torch.is_grad_enabled() and tokens.requires_grad:
            tokens = _OnBackward.apply(tokens, lambda: self._backward_step(index))
        return tokens

    def _backward_step(self, index: int) -> None:
        """Block `index` is about to run its backward (and recompute, when checkpointed).

        With the maximum N (two resident blocks) the block brought in here is `index` itself, so the copy
        cannot overlap; with fewer, it is needed M - 2 blocks later.
        """
        finished = self.num_blocks - 2 - index  # blocks whose backward is complete, less one of margin
        if 1 <= finished <= self.num_swap:
            self._park(index + 2)
            self._bring(index + 2 - self.num_resident)
        self._wait(index)


def enable_block_swap(
    model: nn.Module,
    blocks_to_swap: int,
    compute_device: torch.device | str,
    offload_device: torch.device | str = "cpu",
) -> BlockSwap:
    """Place the DiT for block swap and hook it in: everything but the swapped blocks goes to `compute_device`.

    Call after fp8 and the dtype cast and after `requires_grad_(False)`, instead of moving the DiT to the GPU
    (it works on a DiT already there too, at the cost of holding it all once). Do not `.to()` the DiT afterwards.
    """
    swap = BlockSwap(model.blocks, blocks_to_swap, compute_device, offload_device)
    swapped = {id(m) for index in swap._tensors for m in model.blocks[index].modules()}
    for module in model.modules():
        if id(module) not in swapped:
            module._apply(lambda t: t.to(swap.compute_device), recurse=False)
    model.block_hooks = swap
    return swap
