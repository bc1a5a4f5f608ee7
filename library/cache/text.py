"""Text-encoder output cache files: one safetensors file per distinct caption.

The name is a hash of the caption text and the encoder identity, and the file records both, so an edited caption,
another text encoder or another token length is simply another file (and a file whose record disagrees is rebuilt).
See docs/caches.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from library.atomic import save_safetensors_atomic

FORMAT = "sd-scripts-anima text v1"


def _identity_text(identity: dict[str, str]) -> str:
    return json.dumps(identity, sort_keys=True)


def text_cache_path(folder: Path, caption: str, identity: dict[str, str], suffix: str = "") -> Path:
    """`<folder>/te_<sha256(identity, caption)[:24]><suffix>.safetensors`."""
    digest = hashlib.sha256((_identity_text(identity) + "\n" + caption).encode("utf-8")).hexdigest()[:24]
    return folder / f"te_{digest}{suffix}.safetensors"


def is_valid(path: Path, caption: str, identity: dict[str, str], trust: bool = False) -> bool:
    """True when `path` holds the encoding of exactly this caption by this encoder."""
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            has_tensors = bool(list(handle.keys()))
    except (OSError, SafetensorError):
        return False
    if trust:
        return has_tensors
    return (has_tensors and metadata.get("format") == FORMAT and metadata.get("caption") == caption
            and metadata.get("identity") == _identity_text(identity))


def save_text(path: Path, caption: str, identity: dict[str, str], tensors: dict[str, torch.Tensor]) -> None:
    if not tensors:
        raise ValueError("the text encoder returned no tensors to cache")
    metadata = {"format": FORMAT, "caption": caption, "identity": _identity_text(identity)}
    save_safetensors_atomic({k: v.cpu() for k, v in tensors.items()}, path, metadata)


def load_text(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))
