"""Check an Anima DiT file from its safetensors header alone, before torch is imported.

A wrong file (VAE, text encoder, LoRA, fp8-scaled, no adapter, a tensor of the wrong shape) fails with a
`ModelFileError` naming it in the first second of a run, before the dataset, torch or a single weight is read.
"""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from library.anima.config import AnimaConfig
from library.anima.dit_keys import expected_shapes
from library.errors import ModelFileError

PREFIXES = ("net.", "model.diffusion_model.", "")
# kohya's full-model saves carry these recomputable RoPE tables; they are skipped, never loaded or written.
ROPE_BUFFERS = ("pos_embedder.seq", "pos_embedder.dim_spatial_range", "pos_embedder.dim_temporal_range")
FP8_MARKERS = ("scaled_fp8", "scale_weight", "scale_input", "comfy_quant", ".weight_scale", ".input_scale")
EXPECTED = "an Anima DiT .safetensors file (e.g. anima-base-v1.0.safetensors, with llm_adapter.* inside)"
FIX_DIT = "Pass the Anima DiT file to --pretrained_model_name_or_path."
MAX_HEADER = 100 * 1024 * 1024


@dataclass
class DiTFileInfo:
    """What the header of a DiT file says; `config` holds every size, inferred from shapes."""

    path: str
    prefix: str
    config: AnimaConfig
    dtype: str | None  # the safetensors name of most tensors' dtype ("BF16", "F32", ...)
    has_adapter: bool
    num_blocks: int
    fp8_scaled: bool
    num_tensors: int


def read_header(path: str | os.PathLike) -> dict[str, dict]:
    """The tensor entries of a safetensors header ({key: {dtype, shape, data_offsets}}), reading no weights."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, EXPECTED, "no such file", "Check the path.")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 2 <= length <= min(MAX_HEADER, size - 8):
            raise ModelFileError(path, EXPECTED, "a file that is not safetensors", "Use the .safetensors file.")
        try:
            header = json.loads(handle.read(length))
            header.pop("__metadata__", None)
            end = max((entry["data_offsets"][1] for entry in header.values()), default=0)
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError, IndexError):
            raise ModelFileError(
                path, EXPECTED, "a file that is not safetensors", "Use the .safetensors file."
            ) from None
    if 8 + length + end > size:
        raise ModelFileError(path, EXPECTED, f"a truncated file ({size} bytes)", "Download it again.")
    return header


def _kind_error(path: str | os.PathLike, keys: list[str]) -> ModelFileError | None:
    """Name the kind of a file that is not a DiT at all, from its keys."""
    if any(
        k.startswith(("lora_unet_", "lora_te_")) or "lora_down" in k or "lora_A" in k or ".lokr_" in k for k in keys
    ):
        return ModelFileError(path, EXPECTED, "a LoRA/LoKr file", "Give it to --network_weights. " + FIX_DIT)
    if any(k.endswith("decoder.middle.0.residual.0.gamma") or k.startswith(("decoder.", "encoder.")) for k in keys):
        return ModelFileError(path, EXPECTED, "a VAE (encoder./decoder. keys)", "Give it to --vae. " + FIX_DIT)
    if any(".layers.0." in k or k.startswith(("layers.0.", "model.embed_tokens")) for k in keys):
        return ModelFileError(
            path, EXPECTED, "a Qwen3 text encoder (model.layers.* keys)", "Give it to --qwen3. " + FIX_DIT
        )
    if any(k.startswith("transformer_blocks.") for k in keys):
        return ModelFileError(
            path,
            EXPECTED,
            "a diffusers-format transformer (transformer_blocks.* keys)",
            "Use the original single file.",
        )
    return None


def _detect_prefix(keys: list[str]) -> str | None:
    for prefix in PREFIXES:
        if prefix + "x_embedder.proj.1.weight" in keys:
            return prefix
    return None


def inspect_dit_file(path: str | os.PathLike, strict: bool = True) -> DiTFileInfo:
    """Check a DiT file from its header: kind, key prefix, config, dtype, adapter, fp8. Raises ModelFileError.

    With `strict` (the default) a file we cannot train on (fp8, no llm_adapter) raises too, so a start-up check
    catches it; `strict=False` reports those two in the returned info instead.
    """
    header = read_header(path)
    keys = list(header)
    prefix = _detect_prefix(keys)
    if prefix is None:
        raise _kind_error(path, keys) or ModelFileError(
            path, EXPECTED, f"no x_embedder.proj.1.weight among {len(keys)} keys (first: {keys[:3]})", FIX_DIT
        )
    fp8 = any(marker in k for k in keys for marker in FP8_MARKERS) or any(
        e["dtype"].startswith("F8") for e in header.values()
    )
    shapes: dict[str, list[int]] = {}
    foreign = []
    for key, entry in header.items():
        if any(marker in key for marker in FP8_MARKERS):
            continue  # fp8 scale tensors (ComfyUI's bare `scaled_fp8` too): reported as fp8, not as unknown keys
        name = key[len(prefix) :] if key.startswith(prefix) else None
        if name is None:
            foreign.append(key)
        elif name not in ROPE_BUFFERS:
            shapes[name] = entry["shape"]
    try:
        config = AnimaConfig.from_state_dict(shapes)
    except (KeyError, ValueError) as exc:
        raise ModelFileError(path, EXPECTED, f"a DiT without the tensor {exc}", FIX_DIT) from None
    _check_keys(path, config, prefix, shapes, foreign)
    dtypes = Counter(header[prefix + name]["dtype"] for name in shapes)
    dtype = dtypes.most_common(1)[0][0] if dtypes else None
    info = DiTFileInfo(
        path=str(path),
        prefix=prefix,
        config=config,
        dtype=dtype,
        has_adapter=config.adapter is not None,
        num_blocks=config.num_blocks,
        fp8_scaled=fp8,
        num_tensors=len(header),
    )
    if strict:
        _require_trainable(info)
    return info


def _check_keys(
    path: str | os.PathLike, config: AnimaConfig, prefix: str, shapes: dict[str, list[int]], foreign: list[str]
) -> None:
    """Every key and shape must be exactly what the inferred model has (strict, before any weight is read)."""
    expected = expected_shapes(config)
    unknown = sorted(foreign) + sorted(prefix + k for k in set(shapes) - set(expected))
    missing = sorted(prefix + k for k in set(expected) - set(shapes))
    wrong = sorted(
        f"{prefix}{k} {shapes[k]} (expected {expected[k]})"
        for k in set(expected) & set(shapes)
        if expected[k] != shapes[k]
    )
    for problem, names in (
        ("unknown keys", unknown),
        ("missing keys", missing),
        ("tensors of unexpected shape", wrong),
    ):
        if names:
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            raise ModelFileError(path, EXPECTED, f"{len(names)} {problem}: {', '.join(names[:5])}{more}", FIX_DIT)


def _require_trainable(info: DiTFileInfo) -> None:
    """Refuse what we cannot train on: fp8 weights and a DiT without its llm_adapter (pitfalls 8-9)."""
    if info.fp8_scaled:
        raise ModelFileError(
            info.path,
            EXPECTED + " in bf16, fp16 or fp32",
            "fp8 weights (a ComfyUI fp8-scaled file or float8 tensors), which we do not train on",
            "Train on the bf16 release (anima-base-v1.0.safetensors); fp8 is for inference in ComfyUI.",
        )
    if not info.has_adapter:
        raise ModelFileError(
            info.path,
            EXPECTED,
            "a DiT without llm_adapter.* weights (plain Cosmos-Predict2, or a file saved without the adapter)",
            "Anima needs its LLM adapter; use the official Anima file, which contains it.",
        )
