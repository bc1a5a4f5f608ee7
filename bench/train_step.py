"""Training-step cost: s/step and peak memory of the trainer against a bare PyTorch loop on the same model, with
each memory option on and off, all in one run (issue 11 point 2).

Why: the bare loop does the same math (adapter context, rectified-flow noising, DiT forward, MSE, backward,
AdamW step on our LoRA) with no framework, so trainer/bare is our framework's overhead, and option/none is
what each memory option costs or saves. Every measurement runs in its own child process (`_step_child.py`), so
peaks and start-up do not leak from one into the next.

    python bench/train_step.py --size tiny --resolution 128 --steps 60 --repeats 3 --options none,gc,fp8_gc
    python bench/train_step.py --size real2b --model_dir /tmp/real2b --device cuda --options none,gc,fp8_gc,gc_swap14
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/train_step.py` from anywhere
    sys.path.insert(0, str(ROOT))

from library.anima.block_swap import enable_block_swap  # noqa: E402
from library.anima.compile import compile_blocks  # noqa: E402
from library.anima.conditioning import build_context, collate_text  # noqa: E402
from library.anima.flow import noisy_input, velocity_target  # noqa: E402
from library.anima.fp8 import apply_fp8_base  # noqa: E402
from library.anima.model import AnimaConfig, AnimaDiT  # noqa: E402
from library.anima.text import TextEncoding  # noqa: E402
from networks import lora_anima  # noqa: E402

LEARNING_RATE = 1e-4
CAPTION_TOKENS = 16  # Qwen3 and T5 tokens of the fixed random caption; the context is padded to 512 rows anyway


@dataclass(frozen=True)
class Option:
    """One memory-option set, named by `_`-joined parts: gc, offload, fp8, swapN, compile ("none" = no part)."""

    name: str
    gc: bool = False
    offload: bool = False
    fp8: bool = False
    swap: int = 0
    compile: bool = False

    def trainer_flags(self) -> list[str]:
        """The trainer's command-line flags for this set (the same library calls the bare loop makes)."""
        flags = ["--gradient_checkpointing"] if self.gc else []
        flags += ["--cpu_offload_checkpointing"] if self.offload else []
        flags += ["--fp8_base"] if self.fp8 else []
        flags += ["--blocks_to_swap", str(self.swap)] if self.swap else []
        return flags + (["--torch_compile"] if self.compile else [])


def parse_option(name: str) -> Option:
    """`gc_offload` is gc with the kept inputs on the CPU; `swapN` alone does not add gc (as on the command line)."""
    parts: dict[str, bool | int] = {}
    for part in [] if name == "none" else name.split("_"):
        if part in ("gc", "offload", "fp8", "compile"):
            parts[part] = True
        elif part.startswith("swap") and part[4:].isdigit() and int(part[4:]) > 0:
            parts["swap"] = int(part[4:])
        else:
            raise SystemExit(f"--options: unknown part {part!r} in {name!r}; use none, gc, offload, fp8, swapN, "
                             "compile joined by '_' (e.g. fp8_gc, gc_swap14).")
    if parts.get("offload") and not parts.get("gc"):
        raise SystemExit(f"--options {name}: offload needs gc (gc_offload).")
    return Option(name, **parts)


@dataclass(frozen=True)
class StepResult:
    """Median seconds per step after warm-up, peak memory (bytes) and what that peak is, the losses seen."""

    option: str
    s_per_step: float
    peak_bytes: int
    peak_kind: str  # "cuda max_memory_allocated" or "process max RSS"
    losses: list[float]


def median_step(stamps: list[float], warmup: int) -> float:
    """`stamps` are the ends of steps 0..N-1 preceded by a start stamp; steps before `warmup` are not timed."""
    intervals = [b - a for a, b in zip(stamps, stamps[1:], strict=False)][warmup:]
    if not intervals:
        raise SystemExit(f"--steps must exceed --warmup ({warmup}).")
    return statistics.median(intervals)


def peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process max RSS"


def step_clock(device: torch.device) -> Callable[[], float]:
    """Wall time on CUDA; on the CPU this process's CPU time, which other jobs on shared cores disturb far less
    (with one torch thread it is what the wall time would be on a core of its own)."""
    return time.perf_counter if device.type == "cuda" else time.process_time


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(make_dit: Callable[[], AnimaDiT], option: Option, steps: int, warmup: int, resolution: int, rank: int,
              device: torch.device, dtype: torch.dtype, seed: int = 0) -> StepResult:
    """The trainer's step without the trainer: same set-up order (fp8, LoRA, checkpointing, freeze, place, compile)
    and the same per-step math, on fixed random latents and a fixed random caption encoding."""
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    dit = make_dit()
    if option.fp8:
        apply_fp8_base(dit, dtype)
    network = lora_anima.create_network(1.0, rank, float(rank), None, [], dit)
    network.apply_to([], dit, False, True)
    if option.gc:
        dit.enable_gradient_checkpointing(cpu_offload=option.offload)
    dit.requires_grad_(False)
    if option.swap:
        dit.to(dtype=dtype)
        enable_block_swap(dit, option.swap, device)
    else:
        dit.to(device, dtype=dtype)
    if option.compile:
        compile_blocks(dit)
    network.to(device).train()
    groups, _ = network.prepare_optimizer_params(None, None, LEARNING_RATE)
    optimizer = torch.optim.AdamW(groups, lr=LEARNING_RATE)

    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 16, resolution // 8, resolution // 8, generator=gen).to(device)
    adapter = dit.config.adapter
    caption = TextEncoding(qwen_hidden=torch.randn(CAPTION_TOKENS, adapter.source_dim, generator=gen),
                           t5_ids=torch.randint(0, adapter.vocab_size, (CAPTION_TOKENS,), generator=gen),
                           t5_weights=torch.ones(CAPTION_TOKENS))
    text = {key: value.to(device) for key, value in collate_text([caption]).items()}
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    losses: list[float] = []
    clock = step_clock(device)
    sync(device)
    stamps = [clock()]
    for _ in range(steps):
        with autocast:
            context = build_context(dit.llm_adapter, text)
            noise = torch.randn_like(latents)
            sigmas = torch.sigmoid(torch.randn(1, device=device))
            x = noisy_input(latents, noise, sigmas).unsqueeze(2)
            pred = dit(x.to(dtype), sigmas.to(dtype), context.to(dtype)).squeeze(2)
        loss = F.mse_loss(pred.float(), velocity_target(latents, noise).float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))  # a sync per step, as the trainer's loss logging does
        stamps.append(clock())
    return StepResult(option.name, median_step(stamps, warmup), *peak_memory(device), losses)


def dit_step_flops(config: AnimaConfig, resolution: int, checkpointing: bool, context_rows: int = 512) -> float:
    """FLOPs of one LoRA training step of the DiT blocks at batch 1 (spec §9's split, counted from the config).

    Forward per block: 28·D² per image token for the Linears (self-attention 4·D², cross-attention q/o 2·D²,
    MLP 8·D², ×2 FLOPs), 4·T²·D self-attention and 4·T·L·D cross-attention matmuls, 4·L·Dc·D for the context's
    k/v. The frozen base needs no weight gradients, so backward is 1× forward for the Linears and 2× for the
    attention matmuls (spec §9's "3× forward" counts weight gradients LoRA does not compute); checkpointing adds
    one forward. LoRA, norms, the adapter and the embedders are left out (< 2 % at 1024², rank 32).
    """
    d, dc, length = config.model_channels, config.crossattn_emb_channels, context_rows
    tokens = (resolution // 8 // config.patch_spatial) ** 2
    linears = 28 * d * d * tokens + 4 * length * dc * d
    attention = 4 * tokens * tokens * d + 4 * tokens * length * d
    forward = linears + attention
    step = 2 * linears + 3 * attention + (forward if checkpointing else 0)
    return float(config.num_blocks * step)


def machine_description(device: torch.device) -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    text = f"{model}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"
    if device.type == "cuda":
        text += f"; GPU {torch.cuda.get_device_name(device)}"
    return text + f"; torch {torch.__version__}, Python {platform.python_version()}"


def format_table(rows: list[tuple[StepResult, StepResult]], flops: dict[str, float], peak_tflops: float) -> str:
    """Markdown table; ratios vs the first row (which is "none" when given)."""
    gb = 1e9
    base_bare, base_trainer = rows[0]
    head = ["option", "bare s/step", "trainer s/step", "trainer/bare time", "bare peak GB", "trainer peak GB",
            "trainer/bare peak", f"time vs {base_bare.option} (bare / trainer)",
            f"peak vs {base_bare.option} (bare / trainer)"]
    if flops:
        head += ["bare TFLOP/s", "trainer TFLOP/s", f"trainer % of {peak_tflops:g}"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for bare, trainer in rows:
        cells = [f"`{bare.option}`", f"{bare.s_per_step:.4f}", f"{trainer.s_per_step:.4f}",
                 f"{trainer.s_per_step / bare.s_per_step:.3f}", f"{bare.peak_bytes / gb:.2f}",
                 f"{trainer.peak_bytes / gb:.2f}", f"{trainer.peak_bytes / bare.peak_bytes:.3f}",
                 f"{bare.s_per_step / base_bare.s_per_step:.2f} / {trainer.s_per_step / base_trainer.s_per_step:.2f}",
                 f"{bare.peak_bytes / base_bare.peak_bytes:.2f} / {trainer.peak_bytes / base_trainer.peak_bytes:.2f}"]
        if flops:
            tflop = flops[bare.option] / 1e12
            cells += [f"{tflop / bare.s_per_step:.1f}", f"{tflop / trainer.s_per_step:.1f}",
                      f"{100 * tflop / trainer.s_per_step / peak_tflops:.1f} %"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("tiny", "real2b"), default="tiny",
                        help="model written by tools/make_tiny_anima.py when --model_dir is not given (tiny only)")
    parser.add_argument("--model_dir", help="a folder written by tools/make_tiny_anima.py (needs train_args.toml)")
    parser.add_argument("--steps", type=int, default=40, help="steps per measurement, warm-up included")
    parser.add_argument("--warmup", type=int, default=5, help="first steps not timed (compilation, allocator)")
    parser.add_argument("--resolution", type=int, default=128, help="square image side in pixels, multiple of 16")
    parser.add_argument("--rank", type=int, default=32, help="LoRA rank (alpha = rank)")
    parser.add_argument("--options", default="none,gc,gc_offload,fp8,fp8_gc",
                        help="comma-separated option sets; ratios are taken against the first")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure every cell this many times, round-robin, and keep the fastest (shared machines)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (default 1)")
    parser.add_argument("--peak_tflops", type=float, default=989.0,
                        help="the GPU's dense bf16 peak for the %% column (H100 SXM: 989)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"),
                        help="Markdown file the results are appended to; '-' prints only")
    args = parser.parse_args(argv)
    if args.resolution % 16 or args.warmup < 1 or args.steps <= args.warmup:
        parser.error("--resolution must be a multiple of 16, --warmup at least 1 and --steps more than --warmup")
    if args.size == "real2b" and not args.model_dir:
        parser.error("--size real2b needs --model_dir (python tools/make_tiny_anima.py --size real2b --output_dir D)")
    return args


def main(argv: list[str] | None = None) -> None:
    import _step_child  # beside this file; imports this module back for the bare loop

    args = parse_args(argv)
    options = [parse_option(name) for name in args.options.split(",")]
    device = torch.device(args.device)
    machine, started = machine_description(device), datetime.datetime.now()
    best: dict[tuple[str, str], StepResult] = {}
    with tempfile.TemporaryDirectory(prefix="bench_train_step_") as tmp:
        model_dir = Path(args.model_dir) if args.model_dir else _step_child.make_model(Path(tmp) / "model")
        for round_index in range(args.repeats):  # round-robin, so a slow spell of the machine hits every cell alike
            for option in options:
                for mode in ("bare", "trainer"):
                    work = Path(tmp) / f"{mode}_{option.name}_{round_index}"
                    result = _step_child.run_child(mode, option, model_dir, work, args)
                    print(f"round {round_index + 1} {option.name} {mode}: {result.s_per_step:.4f} s/step", flush=True)
                    if (mode, option.name) not in best or result.s_per_step < best[mode, option.name].s_per_step:
                        best[mode, option.name] = result
        config = _step_child.dit_config(model_dir)
    rows = [(best["bare", o.name], best["trainer", o.name]) for o in options]
    flops = ({o.name: dit_step_flops(config, args.resolution, o.gc) for o in options}
             if device.type == "cuda" else {})
    report = (f"\n## Training step, {started:%Y-%m-%d %H:%M}\n\n"
              f"- Command: `python bench/train_step.py {shlex.join(argv if argv is not None else sys.argv[1:])}`\n"
              f"- Model: {args.size} ({config.num_blocks} blocks, width {config.model_channels}), "
              f"{args.resolution}x{args.resolution}, batch 1, LoRA rank {args.rank}, AdamW, "
              f"{'bf16' if device.type == 'cuda' else 'fp32'}; {args.steps} steps, first {args.warmup} untimed, "
              f"median step ({'wall' if device.type == 'cuda' else 'process CPU'} time), "
              f"fastest of {args.repeats} round(s); "
              f"torch threads {args.threads if device.type == 'cpu' else 'default'}\n"
              f"- Machine: {machine}; load average {os.getloadavg()[0]:.1f} at the end\n"
              f"- Peak memory: {rows[0][0].peak_kind} of each child process\n\n"
              f"{format_table(rows, flops, args.peak_tflops)}\n")
    print(report)
    if args.out != "-":
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(report)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
