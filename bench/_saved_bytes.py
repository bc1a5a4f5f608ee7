"""Count the bytes autograd keeps for backward, on the CPU under FakeTensorMode, as a CUDA bf16 step would keep them.

Used by bench/activation_memory.py. Three parts:

- `SavedBytes`: a `saved_tensors_hooks` pack hook that records every saved tensor's storage once. A storage is
  known by its `_cdata` (the address of the C++ StorageImpl, shared by every view of it); the storage object is
  kept alive, so an address is never reused while counting. Storages of parameters are left out: they exist
  with or without backward. `BlockHooks` snapshots the count around every DiT block.
- `cuda_autocast_on_cpu`: CPU autocast runs LayerNorm in the input's dtype, CUDA autocast in fp32 (its fp32 list);
  this mode runs `F.layer_norm` on an fp32 copy under CPU autocast, as the GPU does. The other ops of the DiT
  agree between the two lists (Linears and SDPA in bf16; the RMSNorms, RoPE and the sinusoid are fp32 by code).
- `HostMoves`: with `--cpu_offload_checkpointing` the block inputs kept for backward live in host memory. On the
  CPU every move is a no-op, so the mode turns each `.to("cpu")` (the offload's spelling; the moves back name a
  `torch.device`) into a copy whose storage counts as host memory, and each other device move into a copy too.

Attention: the CPU's fused kernel (`_scaled_dot_product_flash_attention_for_cpu`) keeps q, k, v, the output and
an fp32 logsumexp per query and head; CUDA's flash and memory-efficient kernels keep the same (the latter pads
the logsumexp to 32 queries), so the count stands for both. The math kernel keeps the probabilities (B, H, L, L).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def storage_key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage()._cdata


class SavedBytes:
    """Unique storages saved for backward while `hooks()` is active, parameters left out."""

    def __init__(self, parameters: Iterable[torch.Tensor]) -> None:
        self.excluded = {storage_key(p) for p in parameters}
        self.storages: dict[int, tuple[torch.UntypedStorage, torch.dtype]] = {}
        self.host: dict[int, torch.UntypedStorage] = {}  # in host memory (offloaded block inputs); kept alive

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = storage_key(tensor)
        if key not in self.excluded and key not in self.storages:
            self.storages[key] = (tensor.untyped_storage(), tensor.dtype)
        return tensor

    def hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor)

    def device_bytes(self, dtype: torch.dtype | None = None) -> int:
        """Bytes of the saved storages on the device (host copies left out), of one dtype or all."""
        return sum(storage.nbytes() for key, (storage, kind) in self.storages.items()
                   if key not in self.host and dtype in (None, kind))

    def host_bytes(self) -> int:
        return sum(storage.nbytes() for key, (storage, _) in self.storages.items() if key in self.host)


class BlockHooks:
    """`AnimaDiT.block_hooks`: the device bytes each block added to the saved set, in block order."""

    def __init__(self, counter: SavedBytes) -> None:
        self.counter, self.per_block, self._start = counter, [], 0

    def before_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        self._start = self.counter.device_bytes()
        return tokens

    def after_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        self.per_block.append(self.counter.device_bytes() - self._start)
        return tokens


@contextlib.contextmanager
def cuda_autocast_on_cpu() -> Iterator[None]:
    """Under CPU autocast, LayerNorm in fp32 as CUDA autocast runs it; everything else unchanged.

    `torch.nn.functional.layer_norm` itself is swapped (nn.LayerNorm looks it up per call), not a TorchFunctionMode:
    a checkpoint's recompute in backward must see the same rule as the forward.
    """
    original = F.layer_norm

    def layer_norm(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return original(x.float() if torch.is_autocast_enabled("cpu") else x, *args, **kwargs)

    F.layer_norm = layer_norm
    try:
        yield
    finally:
        F.layer_norm = original


def _device_argument(args: tuple, kwargs: dict) -> torch.device | str | None:
    for value in (*args[1:], kwargs.get("device")):
        if isinstance(value, (str, torch.device)):
            return value
    return None


class HostMoves(TorchFunctionMode):
    """`tensor.to("cpu")` becomes a copy counted as host memory; other device moves a plain copy."""

    def __init__(self, counter: SavedBytes) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if func is not torch.Tensor.to or (device := _device_argument(args, kwargs)) is None:
            return result
        result = result.clone()
        if device == "cpu":
            self.counter.host[storage_key(result)] = result.untyped_storage()
        return result
