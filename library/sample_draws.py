"""Random draws per sample, not per batch: one generator for each sample, seeded by where the sample sits in
the epoch (its draw key), so the noise and noise level an image trains with do not depend on the batch size,
the number of processes or the gradient accumulation that carries it.

That makes 2 processes x batch 1, 1 process x batch 2 and 1 process x accumulation 2 the same computation, and a
resumed run draws the same numbers as the run it continues.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch

SEED_MASK = 0x7FFF_FFFF_FFFF


def sample_seed(seed: int, epoch: int, draw_key: str) -> int:
    """The seed of one sample's draws in one epoch; a digest, because `hash` of a str differs between processes."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{draw_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & SEED_MASK


def sample_generators(seeds: Sequence[int], device: torch.device | str) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


def per_sample(draw: Callable[[torch.Generator], torch.Tensor], generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Concatenate one draw per generator along dim 0: `draw(g)` returns a leading dimension of 1."""
    return torch.cat([draw(generator) for generator in generators])


def randn_per_sample(shape: Sequence[int], generators: Sequence[torch.Generator], device: torch.device | str,
                     dtype: torch.dtype) -> torch.Tensor:
    """A standard-normal tensor of `shape` (B, ...) whose row b comes from generator b."""
    if len(generators) != shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {shape[0]}")
    row = (1, *shape[1:])
    return per_sample(lambda g: torch.randn(row, generator=g, device=device, dtype=dtype), generators)


def micro_seed(seed: int, epoch: int, global_batch_index: int) -> int:
    """Seed of the global RNG (network dropout) for a micro-batch from its place in the epoch's batch list, not from
    the process that runs it: accelerate gives process p of N the batches p, p+N, ... (global index = local index *
    N + p). Noise and noise levels are drawn per sample instead (library/sample_draws.py)."""
    return hash((seed, epoch, global_batch_index, 0)) & 0x7FFF_FFFF_FFFF
