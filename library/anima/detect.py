"""What is this model file? Answered from safetensors headers and folder listings only, never weights.

Users mix up the five kinds of files an Anima run needs (DiT, Qwen3, VAE, T5 tokenizer, LoRA) and the
many layouts each comes in; a wrong file should fail with a sentence naming what it is, before gigabytes
are read. `tools/check_anima_models.py` prints these findings; the loaders use `describe` in their errors.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from library.anima import vae_keys
from library.anima.detect_adapters import identify_adapter
from library.anima.dit_header import inspect_dit_file
from library.anima.findings import Finding, TensorInfo
from library.anima.pivotal_args import TRIGGER_FILE_FORMAT
from library.errors import ModelFileError

MAX_HEADER_BYTES = 100 * 1024 * 1024


def read_header(path: str | Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Tensor names, dtypes and shapes of a safetensors file; ValueError if it is not one."""
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        if not 2 <= size <= MAX_HEADER_BYTES:
            raise ValueError("not a safetensors file")
        try:
            header = json.loads(handle.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError("not a safetensors file") from error
    if not isinstance(header, dict):
        raise ValueError("not a safetensors file")
    metadata = header.pop("__metadata__", None) or {}
    end = max((entry["data_offsets"][1] for entry in header.values()), default=0)
    if 8 + size + end > Path(path).stat().st_size:
        raise ValueError(f"truncated: {Path(path).stat().st_size} bytes")
    return {k: TensorInfo(v["dtype"], tuple(v["shape"])) for k, v in header.items()}, metadata


def _main_dtype(tensors: dict[str, TensorInfo]) -> str:
    return Counter(info.dtype for info in tensors.values()).most_common(1)[0][0] if tensors else "?"


def _dit(path: str, tensors: dict[str, TensorInfo]) -> Finding:
    """DiT facts come from the DiT loader's own header check, so the verdict is the loader's verdict."""
    try:
        info = inspect_dit_file(path, strict=False)
    except ModelFileError as error:
        return Finding(path, "dit", "a DiT-like file whose tensors do not fit an Anima DiT", False, str(error))
    config = info.config
    summary = (
        f"Anima DiT {'with' if info.has_adapter else 'WITHOUT'} llm_adapter: width {config.model_channels}, "
        f"{config.num_blocks} blocks, prefix '{info.prefix}', {_main_dtype(tensors)}"
        f"{' (fp8 scaled)' if info.fp8_scaled else ''}, {info.num_tensors} tensors"
    )
    details = {"width": config.model_channels, "blocks": config.num_blocks, "prefix": info.prefix}
    if config.adapter is not None:
        details["source_dim"] = config.adapter.source_dim
    finding = Finding(path, "dit", summary, True, details=details)
    try:
        inspect_dit_file(path)
    except ModelFileError as error:
        finding.loads, finding.fix = False, str(error)
    return finding


def _qwen(path: str, tensors: dict[str, TensorInfo], marker: str) -> Finding:
    prefix = marker.removesuffix("layers.0.post_attention_layernorm.weight")
    hidden = tensors[marker].shape[0]
    layers = {int(m.group(1)) for k in tensors if (m := re.match(re.escape(prefix) + r"layers\.(\d+)\.", k))}
    embed = tensors.get(f"{prefix}embed_tokens.weight")
    vocab = embed.shape[0] if embed else 0
    summary = (
        f"Qwen3 text encoder (single file): hidden {hidden}, {len(layers)} layers, vocab {vocab}, "
        f"prefix '{prefix}', {_main_dtype(tensors)}"
    )
    finding = Finding(path, "qwen3", summary, True, details={"hidden": hidden})
    if f"{prefix}layers.0.self_attn.q_norm.weight" not in tensors:
        finding.summary = f"Qwen2/Qwen2.5 text encoder (no q_norm): hidden {hidden}, {len(layers)} layers"
        finding.loads, finding.fix = False, "Anima uses Qwen3-0.6B base: pass qwen_3_06b_base.safetensors with --qwen3."
    elif embed is None or f"{prefix}norm.weight" not in tensors:
        finding.loads, finding.fix = (
            False,
            "The file lacks embed_tokens or the final norm; it is not a whole Qwen3 model.",
        )
    return finding


def _vae(path: str, tensors: dict[str, TensorInfo]) -> Finding:
    shapes = {k: v.shape for k, v in tensors.items()}
    names = "original Wan names"
    if vae_keys.DIFFUSERS_MARKER in shapes:
        names = "diffusers names"
        rename = vae_keys.diffusers_to_original_map(shapes, vae_keys.diffusers_num_res_blocks(shapes))
        shapes = {rename[k]: v for k, v in shapes.items()}
    try:
        layout = vae_keys.infer_layout(shapes)
    except (ValueError, KeyError) as error:
        return Finding(
            path,
            "vae",
            f"Wan-style VAE ({names}) of an unknown layout",
            False,
            f"It does not read as a Qwen-Image VAE ({error}); pass qwen_image_vae.safetensors with --vae.",
        )
    summary = (
        f"Qwen-Image/Wan 2.1 VAE ({names}): base_dim {layout.base_dim}, z_dim {layout.z_dim}, "
        f"dim_mult {list(layout.dim_mult)}, {layout.num_res_blocks} res blocks, {_main_dtype(tensors)}"
    )
    if layout.z_dim != 16:
        return Finding(
            path,
            "vae",
            summary,
            False,
            "Anima's latents have 16 channels (Wan 2.1 / Qwen-Image VAE); "
            "this looks like another VAE (Wan 2.2 has 48). Pass qwen_image_vae.safetensors with --vae.",
        )
    return Finding(path, "vae", summary, True)


def _identify_file(path: str) -> Finding:
    try:
        tensors, metadata = read_header(path)
    except (OSError, ValueError) as error:
        fix = (
            "Download it again." if "truncated" in str(error) else "Pass .safetensors files (convert .ckpt/.pt first)."
        )
        return Finding(path, "unknown", f"not a readable safetensors file ({error})", False, fix)
    for key in tensors:
        if key.endswith("blocks.0.mlp.layer1.weight") and not key.startswith("llm_adapter."):
            return _dit(path, tensors)
        if key.endswith("layers.0.post_attention_layernorm.weight"):
            return _qwen(path, tensors, key)
    if vae_keys.ORIGINAL_MARKER in tensors or vae_keys.DIFFUSERS_MARKER in tensors:
        return _vae(path, tensors)
    adapter = identify_adapter(path, tensors, metadata)
    if adapter is not None:
        return adapter
    if any(k.startswith(("transformer_blocks.", "transformer.transformer_blocks.")) for k in tensors):
        return Finding(
            path,
            "dit",
            "a DiT in diffusers names (CosmosTransformer3DModel / Anima pipeline)",
            False,
            "Use the original single file (split_files/diffusion_models/anima-*.safetensors).",
        )
    if "llm_adapter.out_proj.weight" in tensors:
        return Finding(
            path,
            "dit",
            "an llm_adapter alone (no DiT blocks)",
            False,
            "Pass the whole Anima DiT file, which already contains the llm_adapter.",
        )
    if any(k.startswith(("decoder.mid.", "first_stage_model.")) or k == "decoder.conv_in.weight" for k in tensors):
        return Finding(
            path,
            "unknown",
            "an image VAE of another family (SD/SDXL/Flux AutoencoderKL)",
            False,
            "Anima needs the Qwen-Image VAE: pass qwen_image_vae.safetensors with --vae.",
        )
    if metadata.get("format") == TRIGGER_FILE_FORMAT:
        return Finding(path, "unknown", f"the standalone copy of a trained trigger's rows ({metadata.get('trigger')!r}, "
                       f"{metadata.get('token_ids')})", False, "Load the LoRA file it was saved beside "
                       f"({metadata.get('lora_file')}): that file holds the same rows (docs/pivotal_tuning.md).")
    return Finding(
        path,
        "unknown",
        f"an unrecognised safetensors file ({len(tensors)} tensors, first key {next(iter(tensors), '-')!r})",
        False,
        "This is none of Anima's model files.",
    )


def _read_json(path: Path) -> dict:
    """A JSON object, or {} when the file is absent or not an object (a folder check must not crash)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _identify_folder(path: Path) -> Finding:
    names = {p.name for p in path.iterdir()}
    config = _read_json(path / "config.json")
    has_weights = any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names)
    if config.get("model_type") == "qwen3":
        summary = (
            f"Qwen3 text encoder (HF folder): hidden {config.get('hidden_size')}, "
            f"{config.get('num_hidden_layers')} layers, vocab {config.get('vocab_size')}"
        )
        return Finding(
            str(path),
            "qwen3",
            summary,
            has_weights,
            "" if has_weights else "The folder has config.json but no .safetensors weights.",
            details={"hidden": config.get("hidden_size")},
        )
    if config.get("_class_name") in ("AutoencoderKLQwenImage", "AutoencoderKLWan"):
        ok = config.get("z_dim", 16) == 16 and not config.get("is_residual", False) and has_weights
        return Finding(
            str(path),
            "vae",
            f"{config['_class_name']} (diffusers folder), z_dim {config.get('z_dim', 16)}",
            ok,
            "" if ok else "Anima needs a 16-channel Wan 2.1 / Qwen-Image VAE with its weights.",
        )
    if (path / "vae" / "config.json").is_file():
        inner = _identify_folder(path / "vae")
        inner.path, inner.summary = str(path), inner.summary + " in the pipeline's vae/ subfolder"
        return inner
    tokenizer_class = str(_read_json(path / "tokenizer_config.json").get("tokenizer_class", ""))
    if "spiece.model" in names or tokenizer_class.startswith("T5"):
        ok = bool({"spiece.model", "tokenizer.json"} & names)
        return Finding(
            str(path),
            "t5_tokenizer",
            "T5 tokenizer folder",
            ok,
            ""
            if ok
            else ("It lacks spiece.model and tokenizer.json; omit --t5_tokenizer_path to use the bundled one."),
        )
    if {"vocab.json", "merges.txt"} <= names or tokenizer_class.startswith("Qwen2"):
        return Finding(str(path), "qwen_tokenizer", "Qwen (byte-level BPE) tokenizer folder", True)
    return Finding(
        str(path),
        "unknown",
        f"a folder with {len(names)} entries that is no model or tokenizer",
        False,
        "Point at the model file itself, or at an HF Qwen3 / diffusers VAE / T5 tokenizer folder.",
    )


def identify(path: str | Path) -> Finding:
    """Identify one file or folder, from headers and listings alone (no torch: it runs before torch loads)."""
    target = Path(path)
    if not target.exists():
        return Finding(str(path), "missing", "does not exist", False, "Check the path.")
    return _identify_folder(target) if target.is_dir() else _identify_file(str(target))


def describe(path: str | Path) -> str:
    """A short 'what is this' for error messages."""
    return identify(path).summary


def cross_check(findings: list[Finding]) -> list[str]:
    """Problems between files: the adapter's source width must equal the Qwen3 hidden size."""
    sources = {f.details["source_dim"] for f in findings if f.kind == "dit" and "source_dim" in f.details}
    hiddens = {f.details["hidden"] for f in findings if f.kind == "qwen3" and f.details.get("hidden")}
    if sources and hiddens and sources != hiddens:
        return [
            f"the DiT's llm_adapter reads {sorted(sources)}-wide Qwen states but the Qwen3 given is "
            f"{sorted(hiddens)} wide: use the Qwen3 that belongs to this DiT"
        ]
    return []
