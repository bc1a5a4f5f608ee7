"""Bake LoRA/LoKr/LoHa/norm files into an Anima DiT with ComfyUI's math: W += ratio · scale · ΔW, norms
W += ratio · w_norm (all deltas of one weight summed in float32, then cast once).

The output has the input's layout: the same keys in the same order (prefix `net.`, `model.diffusion_model.`
or none, any extra tensors kept), the same dtypes unless `--save_precision` says otherwise, the input's
metadata plus a note. It streams: the DiT is read one tensor at a time from the memory-mapped file and
patched as it is read, so only the output is ever held in memory. fp8 DiT files are refused (an e4m3 weight
plus a small delta rounds the delta away); merge into the bf16 file instead.

    python tools/merge_anima_lora.py --model anima-base.safetensors --lora a.safetensors b.safetensors
        --ratio 1.0 0.5 --output anima-merged.safetensors   (one command line)
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import _bootstrap  # noqa: F401  (the repository root on sys.path, before any project import)
import torch
from _lora_cli import PRECISIONS, exit_code, precision
from _lora_math import comfy_delta
from _lora_read import ModulePatch, read_adapter, read_adapter_file
from safetensors import safe_open

from library.anima.dit_header import inspect_dit_file
from library.anima.model import AnimaDiT
from library.atomic import save_safetensors_atomic
from library.errors import ConfigError, ModelFileError

NOTE_KEY = "anima_merged_adapters"


def collect_patches(
    loras: list[str], ratios: list[float], model: torch.nn.Module
) -> dict[str, list[tuple[float, ModulePatch]]]:
    """{weight name without prefix: [(ratio, patch), ...]} over every file (all are read before any merging)."""
    patches: dict[str, list[tuple[float, ModulePatch]]] = {}
    for file, ratio in zip(loras, ratios, strict=True):
        weights, _metadata = read_adapter_file(file)
        for patch in read_adapter(weights, model, str(file)):
            patches.setdefault(patch.path + ".weight", []).append((ratio, patch))
    return patches


def merge_file(
    model_file: str | os.PathLike,
    loras: list[str],
    ratios: list[float] | None,
    output: str | os.PathLike,
    dtype: torch.dtype | None = None,
) -> int:
    """Write the merged DiT to `output`; returns the number of weights patched."""
    ratios = [1.0] * len(loras) if ratios is None else ratios
    if len(ratios) != len(loras):
        raise ConfigError(f"--ratio has {len(ratios)} values for {len(loras)} --lora files; give one per file.")
    if os.path.abspath(output) == os.path.abspath(model_file):
        raise ConfigError(f"--output {output} is the --model file; write the merged model to a new file.")
    info = inspect_dit_file(model_file, strict=False)
    if info.fp8_scaled:
        raise ModelFileError(
            model_file,
            "an Anima DiT in bf16, fp16 or fp32",
            "fp8 weights, which cannot take a merge (the small deltas would round away in e4m3)",
            "Merge into the bf16 release and quantise the result afterwards if you need fp8.",
        )
    with torch.device("meta"):
        skeleton = AnimaDiT(info.config)
    patches = collect_patches(loras, ratios, skeleton)
    patched, tensors = 0, {}
    with safe_open(str(model_file), framework="pt", device="cpu") as handle:
        metadata = dict(handle.metadata() or {})
        names = handle.keys()  # a safe_open handle is not iterable
        for key in names:
            tensor = handle.get_tensor(key)
            name = key[len(info.prefix) :] if key.startswith(info.prefix) else key
            target = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
            if name in patches:
                work = tensor.to(torch.float32, copy=True)
                for ratio, patch in patches.pop(name):
                    work += ratio * comfy_delta(patch)
                tensor, patched = work, patched + 1
            tensors[key] = tensor.to(target).contiguous()
    if patches:  # the skeleton comes from this file's header, so every module has its weight in it
        raise ModelFileError(model_file, "an Anima DiT", f"no tensor for {sorted(patches)[:3]}", "Check the file.")
    metadata[NOTE_KEY] = json.dumps([[os.path.basename(f), r] for f, r in zip(loras, ratios, strict=True)])
    save_safetensors_atomic(tensors, output, metadata)
    return patched


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--model", required=True, help="the Anima DiT .safetensors file to merge into")
    parser.add_argument("--lora", nargs="+", required=True, help="adapter files (any format --network_weights reads)")
    parser.add_argument("--ratio", nargs="+", type=float, default=None, help="one strength per file (default 1.0)")
    parser.add_argument("--output", required=True, help="the merged DiT .safetensors file to write")
    parser.add_argument(
        "--save_precision",
        choices=sorted(PRECISIONS),
        default=None,
        help="dtype of the output weights (default: the input's, tensor by tensor)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> None:
        count = merge_file(args.model, args.lora, args.ratio, args.output, precision(args.save_precision))
        print(f"wrote {args.output}: {count} weights patched from {len(args.lora)} file(s)")

    return exit_code(work)


if __name__ == "__main__":
    sys.exit(main())
