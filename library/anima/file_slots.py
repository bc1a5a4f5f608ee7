"""Which option a model file belongs to, told from its header (`library.anima.detect.identify`): a file passed
where a LoRA / LoKr is expected (--network_weights, the LoRA tools) that is a DiT, VAE or text encoder is named
with its slot instead of failing on dozens of unknown keys."""

from __future__ import annotations

import os

from library.anima.detect import identify

SLOTS = {"dit": "--pretrained_model_name_or_path (the base model)", "vae": "--vae", "qwen3": "--qwen3",
         "t5_tokenizer": "--t5_tokenizer_path", "qwen_tokenizer": "--qwen3 (its folder)"}


def not_an_adapter(path: str | os.PathLike) -> str | None:
    """'not a LoRA / LoKr: its header is that of <what it is>; pass it as <option>', or None for an adapter or an unknown
    file (whose keys the caller then reports)."""
    finding = identify(path)
    if finding.kind not in SLOTS:
        return None
    return f"not a LoRA / LoKr: its header is that of a file for {SLOTS[finding.kind]} ({finding.summary})"
