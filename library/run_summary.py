"""What a finished run says: who wrote the LoRA, how the loss went, how long it took, every file it left behind
(the LoRAs and states saved along the way too), and how to load the LoRA in ComfyUI."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from library.loss_curve import moving_average
from library.weight_files import read_safetensors_header

LISTED = 10  # saved files and states listed by name; older ones are counted


def saved_line(is_main_process: bool, steps: int, final: Path) -> str:
    """Only the process that writes the files (process 0, on the main machine) says "saved": with several machines,
    every machine's local main process prints (`accelerator.print`), and the others wrote nothing."""
    if is_main_process:
        return f"training finished: {steps} steps. LoRA saved to {final}"
    return (f"training finished: {steps} steps. The main machine (process 0) saved the LoRA to {final} on its disk; "
            "this machine wrote no LoRA file.")


def comfy_loader(lora: Path) -> str:
    """The ComfyUI node that applies all of the file: a text-encoder LoRA (kohya's `lora_te_` keys) needs the CLIP
    input of LoraLoader; a DiT-only file goes between the model loader and the sampler."""
    try:
        text_encoder = any(key.startswith("lora_te_") for key in read_safetensors_header(lora))
    except (OSError, ValueError):
        text_encoder = False
    if text_encoder:
        return ("a LoraLoader node, model and CLIP (it holds a Qwen3 text-encoder LoRA, which ComfyUI applies from "
                "PR #13847 of 2026-05-11 on)")
    return "a LoraLoaderModelOnly node"


def saved_along_the_way(final: Path) -> list[Path]:
    """The step and epoch LoRAs and the state folders beside `final` (kohya's names, `library.saving` and
    `library.state`), oldest first; half-written `.tmp-` saves are not listed."""
    name, ext = re.escape(final.stem), re.escape(final.suffix)
    pattern = re.compile(rf"{name}-(step\d{{8}}|\d{{6}}){ext}|{name}(-step\d{{8}}|-\d{{6}})?-state")
    found = [path for path in final.parent.iterdir() if pattern.fullmatch(path.name)]
    return sorted(found, key=lambda path: (path.stat().st_mtime, path.name))


def loss_line(rows: Sequence[tuple[int, float]], window: int) -> str | None:
    """The mean loss over `window` steps (the progress bar's avr_loss: one epoch), first, last and lowest. Only
    full windows count, so "first" is not the first step's loss alone; a run shorter than the window has one."""
    if not rows:
        return None
    width = max(1, min(window, len(rows)))
    means = moving_average([loss for _, loss in rows], width)[width - 1:]
    spans = [(rows[i][0], rows[i + width - 1][0]) for i in range(len(means))]
    finite = [(mean, span) for mean, span in zip(means, spans, strict=True) if math.isfinite(mean)]
    if not finite:
        return None
    low, low_span = min(finite)
    label = (f"mean over {width} steps (one epoch)" if width == window
             else f"mean over all {width} steps (less than one epoch of {window})")

    def steps(span: tuple[int, int]) -> str:
        return f"step {span[0]}" if span[0] == span[1] else f"steps {span[0]}-{span[1]}"

    return (f"  loss, {label}: first {finite[0][0]:.4f} ({steps(finite[0][1])}), last {finite[-1][0]:.4f} "
            f"({steps(finite[-1][1])}), lowest {low:.4f} ({steps(low_span)})")


def _duration(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _listed(paths: Sequence[Path]) -> list[str]:
    older = len(paths) - LISTED
    return ([f"    ({older} older ones in {paths[0].parent})"] if older > 0 else []) + \
        [f"    {path}" for path in paths[-LISTED:]]


def training_summary(rows: Sequence[tuple[int, float]], window: int, epochs: int, wall_seconds: float,
                     steps_this_run: int, loop_seconds: float, final: Path,
                     files: Sequence[str | os.PathLike | None]) -> str:
    """A few lines for the console: how far it went, the loss, the time, the files (the LoRA, then `files`, then
    what was saved along the way), and how to use the LoRA."""
    lines = ["training summary",
             f"  steps: {rows[-1][0] if rows else 0} (this run: {steps_this_run}), epochs: {epochs}"]
    if loss := loss_line(rows, window):
        lines.append(loss)
    per_step = f", {loop_seconds / steps_this_run:.2f} s/step" if steps_this_run else ""
    lines.append(f"  wall time: {_duration(wall_seconds)}{per_step}")
    lines += ["  files:", f"    {final}", *(f"    {path}" for path in files if path)]
    if saved := saved_along_the_way(final):
        lines += ["  saved along the way (LoRAs, and states to --resume from):", *_listed(saved)]
    lines.append(f"  in ComfyUI: put {final.name} into ComfyUI/models/loras/ and load it with {comfy_loader(final)} "
                 "(docs/lora_files.md)")
    return "\n".join(lines)
