"""FLOPs of one LoRA training step of the DiT, counted by torch, against the analytic minimum (issue 19 point 2).

Why: MFU on a GPU is only as honest as its FLOP count, and work a frozen-base LoRA step need not do (weight
gradients of frozen Linears, duplicated casts) shows as a count above the minimum. The real 2B shapes are built
without weights (meta, then uninitialised CPU storage) and the step runs under FakeTensorMode, so nothing is
computed: `FlopCounterMode` reads every matmul and attention call from the shapes. The CPU's flash-attention op is
mapped to torch's own SDPA formulas (FlopCounterMode's table knows only the CUDA ones). The analytic minimum is
`bench/train_step.py`'s `dit_step_flops`: forward, input gradients of the Linears, attention backward, one more
forward with checkpointing; LoRA, norms and embedders left out.

    python bench/step_flops.py                  # real 2B shapes at 1024², rank 32 (about 4 GB of RAM, ~1 min)
    python bench/step_flops.py --size tiny      # what tests/test_bench_step_flops.py runs
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils import flop_counter

BENCH = Path(__file__).resolve().parent
for folder in (BENCH.parent, BENCH, BENCH.parent / "tools"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from make_tiny_anima import real2b, tiny  # noqa: E402
from train_step import dit_step_flops  # noqa: E402

from library.anima.model import AnimaConfig, AnimaDiT  # noqa: E402
from networks import lora_anima  # noqa: E402

aten = torch.ops.aten


def _cpu_sdpa(query: tuple, key: tuple, value: tuple, *_: object, **__: object) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward(grad_out: tuple, query: tuple, key: tuple, value: tuple, *_: object, **__: object) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


CPU_ATTENTION = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,  # arguments arrive as shapes
                 aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward}


def counted_step(config: AnimaConfig, resolution: int, rank: int, checkpointing: bool) -> tuple[int, Counter[str]]:
    """(total FLOPs, FLOPs per aten op) of forward + backward of a rank-`rank` LoRA on the frozen DiT."""
    with torch.device("meta"):
        dit = AnimaDiT(config)
    dit = dit.to_empty(device="cpu").to(torch.bfloat16)
    network = lora_anima.create_network(1.0, rank, float(rank), None, [], dit)
    network.apply_to([], dit, False, True)
    dit.requires_grad_(False)
    network.to(dtype=torch.bfloat16)
    if checkpointing:
        dit.enable_gradient_checkpointing(cpu_offload=False)
    params = [p for p in network.parameters() if p.requires_grad]
    latent = resolution // 8
    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.randn(1, 16, 1, latent, latent, dtype=torch.bfloat16)
        context = torch.randn(1, 512, config.crossattn_emb_channels, dtype=torch.bfloat16)
        sigma = torch.full((1,), 0.5, dtype=torch.bfloat16)
        with flop_counter.FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
            loss = dit(x, sigma, context).float().square().mean()
            torch.autograd.grad(loss, params, allow_unused=True)  # the adapter's LoRA is unused: context is given
    per_op = Counter({str(op): n for op, n in counter.get_flop_counts()["Global"].items()})
    return counter.get_total_flops(), per_op


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("real2b", "tiny"), default="real2b")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--rank", type=int, default=32)
    args = parser.parse_args(argv)
    config = real2b().dit if args.size == "real2b" else tiny().dit
    print(f"| {args.size} at {args.resolution}², LoRA rank {args.rank} | counted TFLOP | analytic TFLOP | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for checkpointing in (False, True):
        total, per_op = counted_step(config, args.resolution, args.rank, checkpointing)
        analytic = dit_step_flops(config, args.resolution, checkpointing)
        print(f"| {'gc' if checkpointing else 'none'} | {total / 1e12:.2f} | {analytic / 1e12:.2f} | "
              f"{total / analytic:.3f} |")
        print("  per op: " + ", ".join(f"{op} {n / 1e12:.2f}" for op, n in per_op.most_common()))


if __name__ == "__main__":
    main()
