"""Rewrite any adapter file `--network_weights` reads into our ComfyUI form, keeping its effect exactly.

Reads kohya `lora_unet_`, LyCORIS `lycoris_`, peft `lora_A`/`lora_B` (under `diffusion_model.`,
`transformer.` diffusers names or bare paths, with or without `.default`), files without alpha, norm deltas
(`w_norm`, `diff`) and whole or split LoKr; writes `diffusion_model.<path>.lora_down.weight` /
`.lora_up.weight` / `.alpha`, LoKr keys + `.alpha`, `.w_norm`, which ComfyUI loads unchanged. The scale
ComfyUI applies is kept: tensors are copied, alpha is copied (a missing alpha becomes the rank, ComfyUI's
own reading of a missing alpha). Refuses, naming the key, what it cannot rewrite exactly (text-encoder keys,
DoRA, Tucker forms, unknown keys).

`--to kohya` writes kohya's `lora_unet_<path>` names instead, for kohya's own tools: only the modules kohya's loader
maps, so norm deltas are left out, and the tool says how many and what that changes.

    python tools/convert_anima_lora.py kohya_lora.safetensors --output anima_lora_comfy.safetensors
    python tools/convert_anima_lora.py anima_lora.safetensors --to kohya --output anima_lora_kohya.safetensors
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

import _bootstrap  # noqa: F401  (the repository root on sys.path, before any project import)
import torch
import torch.nn as nn
from _kohya_form import kohya_form, kohya_module, left_out_note
from _lora_cli import PRECISIONS, exit_code, network_module, our_form, precision, save_adapter
from _lora_read import ModulePatch, dit_skeleton, read_adapter, read_adapter_file

NOTE_KEY = "anima_converted_from"


def convert_weights(
    weights: dict[str, torch.Tensor], model: nn.Module, source: str, dtype: torch.dtype | None = None
) -> tuple[dict[str, torch.Tensor], list[ModulePatch]]:
    """(our-form tensors, the modules read); raises ConfigError for anything it cannot convert exactly."""
    patches = read_adapter(weights, model, source)
    return our_form(patches, dtype), patches


def convert_file(
    source: str | os.PathLike,
    output: str | os.PathLike,
    dtype: torch.dtype | None = None,
    model_file: str | None = None,
    to: str = "comfy",
) -> tuple[list[ModulePatch], str]:
    """(the modules written, what was left out and what that changes: empty unless `to` is kohya)."""
    weights, metadata = read_adapter_file(source)
    model = dit_skeleton(model_file)
    tensors, patches = convert_weights(weights, model, str(source), dtype)
    note = ""
    if to == "kohya":
        tensors, left = kohya_form(patches, model, dtype)
        patches, note = [p for p in patches if p not in left], left_out_note(left)
    kinds = Counter(p.kind for p in patches)
    added = sum(p.alpha_added for p in patches)
    original = metadata.get("ss_network_module")
    metadata["ss_network_module"] = kohya_module(patches) if to == "kohya" else network_module(patches)
    form = "kohya's lora_unet_ form" if to == "kohya" else "the diffusion_model. form"
    metadata[NOTE_KEY] = (
        f"{os.path.basename(source)} (network module {original or 'unknown'}), rewritten by "
        f"tools/convert_anima_lora.py into {form}: {dict(kinds)} modules, "
        f"{added} missing alphas set to the rank; the scale ComfyUI applies is unchanged" + (f"; {note}" if note else "")
    )
    save_adapter(tensors, output, metadata)
    return patches, note


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("input", help="the adapter file to convert (.safetensors, or a torch file)")
    parser.add_argument("--output", required=True, help="the .safetensors file to write")
    parser.add_argument(
        "--dtype", choices=sorted(PRECISIONS), default=None, help="cast the weights (default: keep each tensor's)"
    )
    parser.add_argument(
        "--to",
        choices=("comfy", "kohya"),
        default="comfy",
        help="comfy: diffusion_model.<path> keys, which ComfyUI and our trainer read (default); kohya: "
        "lora_unet_<path> keys that kohya's Anima networks map completely (norm deltas are left out, and counted)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="an Anima DiT file whose header gives the exact module sizes (default: the 2B model's sizes)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> None:
        patches, note = convert_file(args.input, args.output, precision(args.dtype), args.model, args.to)
        kinds = Counter(p.kind for p in patches)
        added = sum(p.alpha_added for p in patches)
        print(f"wrote {args.output}: {len(patches)} modules {dict(kinds)}; {added} missing alphas set to the rank")
        if note:
            print(f"warning: {note}.")

    return exit_code(work)


if __name__ == "__main__":
    sys.exit(main())
