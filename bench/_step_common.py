"""What the bench's orchestrator (train_step.py) and its measuring child (_step_child.py) share: the options, the
result record, the clocks and memory readings, and the bare PyTorch loop the trainer is compared with. Both import
this module, and the orchestrator imports the child; nothing imports back."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/...` from anywhere
    sys.path.insert(0, str(ROOT))

from library.anima.block_swap import enable_block_swap  # noqa: E402
from library.anima.compile import compile_blocks  # noqa: E402
from library.anima.conditioning import build_context, collate_text  # noqa: E402
from library.anima.flow import noisy_input, velocity_target  # noqa: E402
from library.anima.fp8 import apply_fp8_base  # noqa: E402
from library.anima.model import AnimaDiT  # noqa: E402
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
              device: torch.device, dtype: torch.dtype, seed: int = 0, backend: str = "inductor") -> StepResult:
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
        compile_blocks(dit, backend=backend)
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
