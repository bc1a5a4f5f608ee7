"""Which LoRA / LoKr format is this file, and is it for Anima? From tensor names and shapes only.

The same Anima LoRA circulates in five spellings (ours `diffusion_model.`, kohya `lora_unet_`, LyCORIS
`lycoris_`, peft `lora_A/lora_B`, diffusers `transformer.`); `--network_weights` reads them all, so the
check only has to tell the spelling and catch the files that cannot apply: other models, text-encoder-only
files and algorithms we do not implement (adapter-files.md §2, §10).
"""

from __future__ import annotations

import re

from library.anima.findings import Finding, TensorInfo

_SUFFIX = re.compile(
    r"\.(lora_(?:down|up|A|B)(?:\.default)?\.weight|lora_(?:A|B)|alpha|dora_scale|w_norm|b_norm|diff|diff_b"
    r"|lokr_w[12](?:_[ab])?|lokr_t[12]|hada_w[12]_[ab]|hada_t[12])$"
)
_TE_PREFIXES = ("lora_te_", "lora_te1_", "lora_te2_", "text_encoders.", "text_encoder.")
_FORMATS = (  # (key prefix, format name); the first match wins
    ("diffusion_model.", "diffusion_model."),
    ("lora_unet_", "kohya lora_unet_"),
    ("lycoris_", "LyCORIS lycoris_"),
    ("transformer.", "diffusers transformer."),
    ("text_conditioner.", "diffusers transformer."),
    ("base_model.model.", "peft base_model.model."),
)
# Anima module paths, dotted or with underscores, for every naming above (after the prefix is removed)
_ANIMA_PATH = re.compile(
    r"(blocks[._]\d+[._](self_attn|cross_attn|mlp|adaln_modulation)|llm_adapter[._]|final_layer[._]|x_embedder"
    r"|t_embedder|transformer_blocks\.\d+\.(attn[12]|ff\.net|norm[123])|text_conditioner\.|proj_out|patch_embed)"
)


def _format_and_path(module: str) -> tuple[str, str]:
    for prefix, name in _FORMATS:
        if module.startswith(prefix):
            return name, module.removeprefix(prefix) if prefix != "text_conditioner." else module
    return "bare module paths (peft / DiffSynth)", module


def identify_adapter(path: str, tensors: dict[str, TensorInfo], metadata: dict[str, str]) -> Finding | None:
    """A `Finding` for an adapter file, or None when no key has an adapter suffix."""
    modules: dict[str, list[str]] = {}
    for key in tensors:
        m = _SUFFIX.search(key)
        if m:
            modules.setdefault(key[: m.start()], []).append(m.group(1))
    if not any(s.startswith(("lora_", "lokr_", "hada_")) for suffixes in modules.values() for s in suffixes):
        return None
    suffixes = {s for group in modules.values() for s in group}
    algorithm = (
        "LoKr"
        if any(s.startswith("lokr_") for s in suffixes)
        else ("LoHa" if any(s.startswith("hada_") for s in suffixes) else "LoRA")
    )
    te = [m for m in modules if m.startswith(_TE_PREFIXES)]
    dit = [m for m in modules if not m.startswith(_TE_PREFIXES)]
    formats = sorted({_format_and_path(m)[0] for m in dit})
    spelling = "lora_A/lora_B" if any(s.startswith(("lora_A", "lora_B")) for s in suffixes) else "lora_down/lora_up"
    rank = next(
        (tensors[k].shape[0] for k in tensors if re.search(r"\.lora_(down|A)(\.default)?(\.weight)?$", k)), None
    )
    parts = [f"{algorithm} adapter, {' + '.join(formats) or 'no DiT'} format"]
    if algorithm == "LoRA":
        parts.append(f"{spelling}, rank {rank}")
    parts.append(f"{len(dit)} DiT modules" + (f", {len(te)} text-encoder modules" if te else ""))
    parts.append("with alpha" if "alpha" in suffixes else "no alpha (scale 1)")
    if metadata.get("ss_network_module"):
        parts.append(f"trained with {metadata['ss_network_module']}")
    finding = Finding(path, "adapter", "; ".join(parts), True, details={"algorithm": algorithm, "formats": formats})
    anima = [m for m in dit if _ANIMA_PATH.search(_format_and_path(m)[1])]
    if not dit:
        finding.loads, finding.fix = False, "It holds only text-encoder modules; nothing applies to the Anima DiT."
    elif not anima:
        finding.loads, finding.fix = (
            False,
            (f"Its module names ({dit[0]!r}, ...) are not Anima's; it is an adapter for another model."),
        )
    elif algorithm == "LoHa":
        finding.loads, finding.fix = False, "LoHa is not supported; train or convert to LoRA or LoKr."
    return finding
