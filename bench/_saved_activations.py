"""Bytes autograd keeps for backward per image token in one DiT block of the real width, measured on the CPU.

Why: without checkpointing these activations are the largest memory item at 1024², and no GPU was at hand to
measure a peak. Saved tensors are counted by unique storage (`saved_tensors_hooks`) for a 1-block real-width
DiT with a rank-32 LoRA, at two resolutions; the difference per token is one block's activation cost, since the
weights (also saved, for the input gradients) do not grow with the tokens. Feeds docs/memory_and_speed.md.

    python bench/_saved_activations.py                  # bf16 weights, bf16 autocast, 256² and 512² (≈ 30 s)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from library.anima.model import AnimaConfig, AnimaDiT  # noqa: E402
from networks import lora_anima  # noqa: E402


def saved_bytes(dit: AnimaDiT, resolution: int, autocast: bool) -> dict[torch.dtype, int]:
    """Bytes of the unique storages saved for backward by one forward at `resolution`², per dtype."""
    seen: dict[int, tuple[int, torch.dtype]] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = (storage.nbytes(), tensor.dtype)
        return tensor

    latent = resolution // 8
    x = torch.randn(1, 16, 1, latent, latent, dtype=torch.bfloat16)
    context = torch.randn(1, 512, dit.config.crossattn_emb_channels, dtype=torch.bfloat16)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        dit(x, torch.tensor([0.5], dtype=torch.bfloat16), context)
    totals: dict[torch.dtype, int] = {}
    for size, dtype in seen.values():
        totals[dtype] = totals.get(dtype, 0) + size
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", default="256,512", help="two square image sides (multiples of 16)")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--no_autocast", action="store_true", help="run in the weight dtype without autocast")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dit = AnimaDiT(replace(AnimaConfig(), num_blocks=1)).to(torch.bfloat16)
    lora_anima.create_network(1.0, args.rank, float(args.rank), None, [], dit).apply_to([], dit, False, True)
    dit.requires_grad_(False)
    low, high = (int(r) for r in args.resolutions.split(","))
    small, large = (saved_bytes(dit, r, not args.no_autocast) for r in (low, high))
    extra_tokens = (high // 16) ** 2 - (low // 16) ** 2
    for dtype in sorted(set(small) | set(large), key=str):
        per_token = (large.get(dtype, 0) - small.get(dtype, 0)) / extra_tokens
        print(f"{str(dtype):15s} {per_token / 1e3:8.1f} KB per image token per block")
    per_token = (sum(large.values()) - sum(small.values())) / extra_tokens
    print(f"{'total':15s} {per_token / 1e3:8.1f} KB per image token per block; at 1024² (4096 tokens) "
          f"{per_token * 4096 / 1e9:.2f} GB per block, {per_token * 4096 * 28 / 1e9:.1f} GB for 28 blocks")


if __name__ == "__main__":
    main()
