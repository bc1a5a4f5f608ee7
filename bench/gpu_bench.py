"""The GPU questions in one run (issue 19): seconds per step, peak allocated and reserved memory and MFU of the
real trainer and of a bare PyTorch loop, on the 2B Anima DiT at 1024², batch 1, LoRA rank 32, cached text, for
each memory option. The weights are random and built on the GPU (bench/_virtual_model.py): nothing is
downloaded, and no model file is written. Each option runs in its own process (bench/_gpu_child.py); a failure
(out of memory, a compile error) is a row with its error. The table is appended to bench/RESULTS.md.

    bash bench/gpu.sh             # one H100/H200-class GPU, about 5 minutes
    bash bench/gpu.sh --dry       # the same script on the CPU with the tiny model, under a minute
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

BENCH = Path(__file__).resolve().parent
for folder in (BENCH.parent, BENCH, BENCH.parent / "tools"):  # run as `bash bench/gpu.sh` from anywhere
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from _virtual_model import configs  # noqa: E402
from make_tiny_anima import make  # noqa: E402
from train_step import ROOT, dit_step_flops, machine_description  # noqa: E402

OPTIONS = "none,gc,fp8_gc,gc_swap14,gc_swap26,compile,gc_compile"
DRY_OPTIONS = "none,fp8_gc_swap14,gc_compile"  # every part of OPTIONS at least once
# Dense bf16 tensor peaks (TFLOP/s, no sparsity) from the vendors' data sheets, matched on the device name in order
PEAKS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200", 989.0), ("H100", 989.0), ("A100", 312.0),
         ("L40S", 362.0))


def peak_tflops(name: str, given: float | None) -> float | None:
    if given:
        return given
    return next((peak for key, peak in PEAKS if key in name), None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny model, a few steps: checks the script runs")
    parser.add_argument("--options", help=f"comma-separated option sets (default {OPTIONS}; --dry: {DRY_OPTIONS})")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 12; --dry: 3)")
    parser.add_argument("--warmup", type=int, help="untimed first steps (default 4; --dry: 1)")
    parser.add_argument("--peak_tflops", type=float, help="the GPU's dense bf16 peak, when its name is not known")
    parser.add_argument("--out", help="Markdown file the table is appended to (default bench/RESULTS.md; "
                                      "--dry: '-', print only)")
    args = parser.parse_args(argv)
    args.options = args.options or (DRY_OPTIONS if args.dry else OPTIONS)
    args.steps = args.steps or (3 if args.dry else 12)
    args.warmup = args.warmup or (1 if args.dry else 4)
    args.out = args.out or ("-" if args.dry else str(ROOT / "bench" / "RESULTS.md"))
    if not args.dry and not torch.cuda.is_available():
        raise SystemExit(f"error: no CUDA device here (torch {torch.__version__}). Run bench/gpu.sh on a machine "
                         "with an NVIDIA GPU, or add --dry to check the script on the CPU.")
    return args


def dry_option(name: str, blocks: int) -> str:
    """The dry DiT has few blocks: swapN keeps its part but swaps what it can (blocks - 2)."""
    return "_".join(f"swap{min(int(p[4:]), blocks - 2)}" if p.startswith("swap") else p for p in name.split("_"))


def run_option(name: str, args: argparse.Namespace, model_dir: Path, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    spec = {"option": name, "size": "tiny" if args.dry else "real2b", "device": "cpu" if args.dry else "cuda",
            "model_dir": str(model_dir), "work": str(work), "steps": args.steps, "warmup": args.warmup,
            "resolution": 64 if args.dry else 1024, "rank": 32, "threads": 1,
            "dynamo_backend": "eager" if args.dry else "inductor"}
    (work / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    log = work / "log.txt"
    with open(log, "w", encoding="utf-8") as handle:
        code = subprocess.call([sys.executable, str(ROOT / "bench" / "_gpu_child.py"), str(work / "spec.json"),
                                str(work / "result.json")], stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    if code or not (work / "result.json").is_file():
        tail = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        error = f"process exit {code}: {tail[-1][:300] if tail else 'no output'}"
        return {"bare": {"error": error}, "trainer": {"error": error}}
    return json.loads((work / "result.json").read_text(encoding="utf-8"))


def cells(result: dict[str, Any], flops: float, peak: float | None) -> list[str]:
    if "error" in result:
        return ["—"] * 4
    seconds, gb = result["s_per_step"], 1e9
    mfu = f"{100 * flops / seconds / (peak * 1e12):.1f} %" if peak else "—"
    finite = all(math.isfinite(loss) for loss in result["losses"])
    return [f"{seconds:.4f}", mfu, f"{result['peak_bytes'] / gb:.2f} / {result['reserved_bytes'] / gb:.2f}",
            "yes" if finite else "**no**"]


def table(rows: list[tuple[str, dict[str, Any]]], config: Any, resolution: int, peak: float | None) -> str:
    head = ["option", "bare s/step", "bare MFU", "bare peak alloc / reserved GB", "bare loss finite",
            "trainer s/step", "trainer MFU", "trainer peak alloc / reserved GB", "trainer loss finite",
            "trainer/bare time", "error"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 2) + " --- |"]
    for name, result in rows:
        flops = dit_step_flops(config, resolution, "gc" in name.split("_"))
        bare, trainer = result["bare"], result["trainer"]
        ratio = (f"{trainer['s_per_step'] / bare['s_per_step']:.3f}"
                 if "error" not in bare and "error" not in trainer else "—")
        errors = "; ".join(f"{mode}: {part['error']}" for mode, part in (("bare", bare), ("trainer", trainer))
                           if "error" in part).replace("|", "/")
        lines.append("| " + " | ".join([f"`{name}`", *cells(bare, flops, peak), *cells(trainer, flops, peak),
                                         ratio, errors]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config, _ = configs("tiny" if args.dry else "real2b")
    names = [dry_option(n, config.num_blocks) if args.dry else n for n in args.options.split(",")]
    device = torch.device("cpu" if args.dry else "cuda")
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "none (--dry)"
    peak = peak_tflops(gpu, args.peak_tflops)
    started = datetime.datetime.now()
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        model_dir = make(Path(tmp) / "files", seed=0, size_name="tiny")  # real files for the trainer to name
        rows = [(name, run_option(name, args, model_dir, Path(tmp) / name)) for name in names]
    resolution = 64 if args.dry else 1024
    text = (f"\n## GPU bench{' (dry run)' if args.dry else ''}, {started:%Y-%m-%d %H:%M}\n\n"
            f"- Command: `bash bench/gpu.sh {shlex.join(argv if argv is not None else sys.argv[1:])}`\n"
            f"- Model: {'tiny widths, ' + str(config.num_blocks) + ' blocks' if args.dry else '2B Anima DiT'}, "
            f"random weights; {resolution}x{resolution}, batch 1, LoRA rank 32, AdamW, cached text; "
            f"{'fp32' if args.dry else 'bf16'}; {args.steps} steps, first {args.warmup} untimed, median step\n"
            f"- GPU: {gpu}; bf16 peak used for MFU: {f'{peak:g} TFLOP/s' if peak else 'unknown (pass --peak_tflops)'}"
            f"\n- Machine: {machine_description(device)}; CUDA {torch.version.cuda or 'none'}\n\n"
            + table(rows, config, resolution, peak) + "\n")
    print(text)
    if args.out != "-":
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(text)
    failed = [name for name, result in rows if any("error" in part for part in result.values())]
    return 1 if failed and args.dry else 0  # a dry run must run every row; on a GPU an OOM row is a result


if __name__ == "__main__":
    sys.exit(main())
