"""Bytes autograd keeps for backward in one bf16 LoRA step of the DiT, per memory option, without a GPU (issue 19).

Why: without checkpointing these activations are the largest item of a 1024² step, and each option's saving
should be known before a GPU is at hand. The real 2B DiT is built under FakeTensorMode (shapes only, no memory),
the LoRA is applied as the trainer applies it (`create_network` + `apply_to`), and one forward runs under CPU
autocast to bf16, with LayerNorm in fp32 as CUDA autocast runs it. `saved_tensors_hooks` count every storage kept
for backward once (bench/_saved_bytes.py: storage identity, the CUDA mapping, host memory under offload). The
context is given as with cached text outputs; the llm_adapter's own activations (512 rows, 1024 wide) are left out.

    python bench/activation_memory.py                      # 2B at 1024², rank 32, 512 context rows (~1 min)
    python bench/activation_memory.py --size tiny --resolution 128 --out -       # what the test runs

Columns: "saved" is what the forward leaves for backward on the device (parameters excluded); "per block" the
last block's share of it; with checkpointing backward recomputes one block at a time, so "activation peak" adds
one uncheckpointed block's saved bytes (measured in the same run without checkpointing) to what is held. "step
estimate" adds the DiT weights (bf16) and the network's fp32 weights, gradients and two AdamW moments; the CUDA
context, allocator slack and gradient temporaries come on top.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import shlex
import sys
from pathlib import Path

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend

BENCH = Path(__file__).resolve().parent
for folder in (BENCH.parent, BENCH, BENCH.parent / "tools"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from _report import add_out_option, publish  # noqa: E402
from _saved_bytes import BlockHooks, HostMoves, SavedBytes, cuda_autocast_on_cpu  # noqa: E402
from make_tiny_anima import real2b, tiny  # noqa: E402
from train_step import machine_description  # noqa: E402

from library.anima.layers import set_sdpa_backends  # noqa: E402
from library.anima.model import AnimaConfig, AnimaDiT  # noqa: E402
from networks import lora_anima  # noqa: E402

OPTIONS = {  # name: (trainer flags, gradient checkpointing, CPU offload, math attention)
    "none": ("", False, False, False),
    "gc": ("--gradient_checkpointing", True, False, False),
    "gc_offload": ("--gradient_checkpointing --cpu_offload_checkpointing", True, True, False),
    "attn_math": ("--attn_mode math", False, False, True),
}


@dataclasses.dataclass
class Saved:
    """One forward's count: device bytes kept (all / fp32), host bytes, each block's share."""

    option: str
    device: int
    fp32: int
    host: int
    per_block: list[int]


def build(config: AnimaConfig, rank: int) -> tuple[AnimaDiT, torch.nn.Module]:
    """The frozen bf16 DiT and the trainer's fp32 LoRA network; call under FakeTensorMode (no memory)."""
    torch.set_default_dtype(torch.bfloat16)  # fake parameters cannot be swapped by .to(dtype)
    try:
        dit = AnimaDiT(config)
    finally:
        torch.set_default_dtype(torch.float32)
    network = lora_anima.create_network(1.0, rank, float(rank), None, [], dit)
    network.apply_to([], dit, False, True)
    dit.requires_grad_(False)
    return dit, network


def count_saved(dit: AnimaDiT, network: torch.nn.Module, option: str, resolution: int, context_rows: int) -> Saved:
    """Run one forward with `option` and count what it keeps for backward (call under FakeTensorMode)."""
    _, checkpointing, offload, math = OPTIONS[option]
    counter = SavedBytes([*dit.parameters(), *network.parameters()])
    dit.block_hooks = blocks = BlockHooks(counter)
    if checkpointing:
        dit.enable_gradient_checkpointing(cpu_offload=offload)
    else:
        dit.disable_gradient_checkpointing()
    set_sdpa_backends([SDPBackend.MATH] if math else None)
    latent = resolution // 8
    x = torch.randn(1, dit.config.in_channels, 1, latent, latent, dtype=torch.bfloat16)
    context = torch.randn(1, context_rows, dit.config.crossattn_emb_channels, dtype=torch.bfloat16)
    sigma = torch.full((1,), 0.5, dtype=torch.bfloat16)
    try:
        with counter.hooks(), torch.autocast("cpu", dtype=torch.bfloat16), cuda_autocast_on_cpu(), HostMoves(counter):
            dit(x, sigma, context).float().square().mean()
    finally:
        dit.block_hooks = None
        set_sdpa_backends(None)
    return Saved(option, counter.device_bytes(), counter.device_bytes(torch.float32), counter.host_bytes(),
                 blocks.per_block)


def state_bytes(dit: AnimaDiT, network: torch.nn.Module) -> int:
    """DiT weights as stored, plus 16 bytes per trained parameter (fp32 weight, gradient, two AdamW moments)."""
    trained = sum(p.numel() for p in network.parameters() if p.requires_grad)
    return sum(p.numel() * p.element_size() for p in dit.parameters()) + 16 * trained


def format_table(results: list[Saved], state: int) -> str:
    unchecked = next((r.per_block[-1] for r in results if not OPTIONS[r.option][1]), None)
    lines = ["| option | flags | saved MB | of it fp32 MB | host MB | per block MB | activation peak MB | "
             "step estimate GB |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        recompute = unchecked if OPTIONS[r.option][1] else 0
        peak = "n/a" if recompute is None else f"{(r.device + recompute) / 1e6:.1f}"
        estimate = "n/a" if recompute is None else f"{(r.device + recompute + state) / 1e9:.2f}"
        lines.append(f"| `{r.option}` | {OPTIONS[r.option][0] or '-'} | {r.device / 1e6:.1f} | {r.fp32 / 1e6:.1f} | "
                     f"{r.host / 1e6:.1f} | {r.per_block[-1] / 1e6:.1f} | {peak} | {estimate} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("real2b", "tiny"), default="real2b")
    parser.add_argument("--blocks", type=int, default=None, help="DiT blocks (default: the size's own)")
    parser.add_argument("--resolution", type=int, default=1024, help="square image side, a multiple of 16")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--context_rows", type=int, default=512, help="rows of the cross-attention context")
    parser.add_argument("--options", default=",".join(OPTIONS), help=f"comma-separated, of {', '.join(OPTIONS)}")
    add_out_option(parser)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.options.split(",")) - set(OPTIONS))
    if unknown or args.resolution % 16:
        parser.error(f"unknown --options {unknown}" if unknown else "--resolution must be a multiple of 16")
    return args


def main(argv: list[str] | None = None) -> list[Saved]:
    args = parse_args(argv)
    config = real2b().dit if args.size == "real2b" else tiny().dit
    config = dataclasses.replace(config, num_blocks=args.blocks or config.num_blocks)
    started, machine = datetime.datetime.now(), machine_description(torch.device("cpu"))
    with FakeTensorMode(allow_non_fake_inputs=True):
        dit, network = build(config, args.rank)
        results = [count_saved(dit, network, name, args.resolution, args.context_rows)
                   for name in args.options.split(",")]
        state = state_bytes(dit, network)
    report = (f"\n## Activation memory, {started:%Y-%m-%d %H:%M}\n\n"
              f"- Command: `{shlex.join(['python', 'bench/activation_memory.py', *(argv if argv is not None else sys.argv[1:])])}`\n"
              f"- Model: {args.size} ({config.num_blocks} blocks, width {config.model_channels}), {args.resolution}², "
              f"batch 1, {args.context_rows} context rows, LoRA rank {args.rank} (fp32) on the frozen bf16 DiT, "
              "bf16 autocast (LayerNorm fp32 as on CUDA); one forward under FakeTensorMode, saved storages counted\n"
              f"- Machine: {machine}\n- DiT weights + network with AdamW: {state / 1e9:.2f} GB\n\n"
              f"{format_table(results, state)}\n")
    publish(report, args.out)
    return results


if __name__ == "__main__":
    main()
