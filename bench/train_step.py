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
import shlex
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/train_step.py` from anywhere
    sys.path.insert(0, str(ROOT))

from _report import add_out_option, publish  # noqa: E402
from _step_common import StepResult, parse_option  # noqa: E402

from library.anima.model import AnimaConfig  # noqa: E402


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
    add_out_option(parser)
    args = parser.parse_args(argv)
    if args.resolution % 16 or args.warmup < 1 or args.steps <= args.warmup:
        parser.error("--resolution must be a multiple of 16, --warmup at least 1 and --steps more than --warmup")
    if args.size == "real2b" and not args.model_dir:
        parser.error("--size real2b needs --model_dir (python tools/make_tiny_anima.py --size real2b --output_dir D)")
    if args.device == "cuda" and not torch.cuda.is_available():
        built = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise SystemExit(f"error: --device cuda: {built} (torch {torch.__version__}). Run it on a machine with an "
                         "NVIDIA GPU and a CUDA build of torch, or leave --device at cpu.")
    return args


def main(argv: list[str] | None = None) -> None:
    import _step_child  # beside this file; lazy: it imports the trainer only when a bench runs

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
    publish(report, args.out)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
