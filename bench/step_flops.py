"""FLOPs of one training step through the trainer's own path, counted by torch, against the analytic minimum
(issue 19 point 2).

Why: MFU on a GPU is only as honest as its FLOP count, and work a frozen-base LoRA step need not do (weight
gradients of frozen Linears, a delta rebuilt per step, the adapter run without need) shows as a count above the
minimum. The real 2B shapes are built under FakeTensorMode (no memory, nothing computed) and the step is the
trainer's: `create_trained_network` with the trainer's network arguments, `get_noise_pred_and_target` on a
cached-text batch (Qwen3 states, T5 ids and weights, latents) under bf16 autocast, the loop's `reduce_loss`,
backward. The batch stays real (masks and sigmas are read on the host); every op that meets a fake weight is fake.
`FlopCounterMode` reads every matmul and attention from the shapes; the CPU's flash-attention ops are mapped to
torch's SDPA formulas (its table knows only the CUDA ones). The minimum is `bench/step_minimum.py`.

    python bench/step_flops.py                  # real 2B shapes at 1024², rank 32 (about 4 GB of RAM, ~1 min)
    python bench/step_flops.py --size tiny --resolution 64 --rank 4     # what tests/test_bench_step_flops.py runs
"""

from __future__ import annotations

import argparse
import dataclasses
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

from _saved_bytes import cuda_autocast_on_cpu  # noqa: E402
from make_tiny_anima import real2b, tiny  # noqa: E402
from step_minimum import Minimum, Trained, step_minimum  # noqa: E402

from library.anima.model import AnimaConfig, AnimaDiT  # noqa: E402
from library.anima.network_trainer import AnimaNetworkTrainer  # noqa: E402
from library.args import parse_args  # noqa: E402
from library.loss_reduction import reduce_loss  # noqa: E402
from library.network_setup import create_trained_network  # noqa: E402
from library.trainer import ModelParts  # noqa: E402

aten = torch.ops.aten
FLASH, FLASH_BACKWARD = "aten._scaled_dot_product_flash_attention_for_cpu", \
    "aten._scaled_dot_product_flash_attention_for_cpu_backward"


def _cpu_sdpa(query: tuple, key: tuple, value: tuple, *_: object, **__: object) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward(grad_out: tuple, query: tuple, key: tuple, value: tuple, *_: object, **__: object) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


CPU_ATTENTION = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,  # arguments arrive as shapes
                 aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward}


ROOTS = {"Linear": "network Linears"}  # the LoRA's own Linears, not registered under the DiT: their backward


@dataclasses.dataclass
class Counted:
    """torch's count of one step: the total, per aten op, per root module (the adapter runs outside the DiT)."""

    total: int
    per_op: Counter[str]
    per_module: dict[str, int]


def trainer_args(network_module: str, rank: int, checkpointing: bool, extra: list[str]) -> argparse.Namespace:
    """The trainer's options as its own parser reads them: defaults, cached text and latents, bf16."""
    argv = ["--network_module", network_module, "--network_dim", str(rank), "--network_alpha", str(rank),
            "--mixed_precision", "bf16", "--cache_text_encoder_outputs", "--cache_latents", *extra]
    return parse_args(AnimaNetworkTrainer().setup_parser(), argv + (["--gradient_checkpointing"] if checkpointing else []))


def cached_batch(config: AnimaConfig, resolution: int, tokens: int) -> tuple[torch.Tensor, list[dict]]:
    """Latents and one caption's cached text outputs, as the text cache hands them to the step."""
    source = config.adapter.source_dim if config.adapter is not None else config.crossattn_emb_channels
    text = {"qwen_hidden": torch.randn(tokens, source, dtype=torch.bfloat16),
            "t5_ids": torch.randint(0, 1000, (tokens,)), "t5_weights": torch.ones(tokens)}
    return torch.randn(1, config.in_channels, resolution // 8, resolution // 8), [text]


def counted_step(config: AnimaConfig, resolution: int, rank: int, checkpointing: bool, tokens: int = 256,
                 network_module: str = "networks.lora_anima", extra: list[str] | None = None) -> Counted:
    """Count forward + backward of one trainer step; `tokens` is the caption's Qwen3 and T5 length."""
    trainer = AnimaNetworkTrainer()
    args = trainer_args(network_module, rank, checkpointing, extra or [])
    with FakeTensorMode(allow_non_fake_inputs=True):
        torch.set_default_dtype(torch.bfloat16)  # fake parameters cannot be swapped by .to(dtype)
        try:
            dit = AnimaDiT(config)
        finally:
            torch.set_default_dtype(torch.float32)
        models = ModelParts(denoiser=dit, text_encoders=[], vae=None)
        create_trained_network(args, models, trainer.network_args(args), lambda *_: None)
    if checkpointing:  # as NetworkTrainer.train does after building the network
        dit.enable_gradient_checkpointing(cpu_offload=False)
    dit.requires_grad_(False)
    latents, text = cached_batch(config, resolution, tokens)
    generators = [torch.Generator().manual_seed(0)]
    with flop_counter.FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION, depth=1) as counter, \
            cuda_autocast_on_cpu():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pred, target, sigmas, weighting = trainer.get_noise_pred_and_target(
                args, None, models, latents, text, generators)
        reduce_loss(args, pred, target, sigmas, weighting, torch.ones(1), None).backward()
    counts = counter.get_flop_counts()
    per_op = Counter({str(op): n for op, n in counts["Global"].items()})
    per_module = {ROOTS.get(name, name): sum(ops.values()) for name, ops in counts.items()
                  if name != "Global" and "." not in name}
    return Counted(counter.get_total_flops(), per_op, per_module)


def attention_extra(counted: Counted, minimum: Minimum) -> tuple[float, float]:
    """(score recompute, unneeded dK and dV) of the flash kernel's backward over the minimum: torch counts its
    backward as 2.5 x its forward for every attention, keys and values included."""
    recompute = counted.per_op[FLASH_BACKWARD] - 2 * minimum.attention_forward
    return recompute, 2 * minimum.attention_forward - minimum.attention_backward


def report_rows(config: AnimaConfig, resolution: int, rank: int, tokens: int) -> list[str]:
    """Markdown rows: counted, minimum, ratio, the flash kernel's extra named apart; per op and per module."""
    lines = ["| option | counted TFLOP | minimum TFLOP | ratio | flash score recompute TFLOP | "
             "flash dK, dV not needed TFLOP | ratio less both |", "| --- |" + " ---: |" * 6]
    notes = []
    for checkpointing in (False, True):
        counted = counted_step(config, resolution, rank, checkpointing, tokens)
        minimum = step_minimum(config, resolution, Trained(rank), checkpointing, tokens, tokens)
        recompute, kv = attention_extra(counted, minimum)
        name = "gc" if checkpointing else "none"
        lines.append(f"| `{name}` | {counted.total / 1e12:.3f} | {minimum.total / 1e12:.3f} | "
                     f"{counted.total / minimum.total:.4f} | {recompute / 1e12:.3f} | {kv / 1e12:.3f} | "
                     f"{(counted.total - recompute - kv) / minimum.total:.4f} |")
        notes.append(f"- `{name}` counted per op: " + _tflop(counted.per_op) + "; per module: "
                     + _tflop(counted.per_module) + "; minimum: " + _tflop(dataclasses.asdict(minimum)))
    return lines + [""] + notes


def _tflop(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value / 1e12:.3f}" for name, value in values.items())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("real2b", "tiny"), default="real2b")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=256, help="the caption's Qwen3 and T5 token count")
    args = parser.parse_args(argv)
    config = real2b().dit if args.size == "real2b" else tiny().dit
    print("\n".join(report_rows(config, args.resolution, args.rank, args.tokens)))


if __name__ == "__main__":
    main()
