"""Text-encoder output cache files: one safetensors file per distinct caption.

The name is a hash of the caption text and the encoder identity, and the file records both, so an edited caption,
another text encoder or another token length is simply another file (and a file whose record disagrees, or whose
data no longer matches its checksum, is rebuilt). See docs/caches.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from library.atomic import save_safetensors_atomic
from library.cache import checksum

FORMAT = "sd-scripts-anima text v2"  # v2: checksums of the tensors; v1 files are rebuilt


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
            names = list(handle.keys())
            if trust:
                return bool(names)
            return (bool(names) and metadata.get("format") == FORMAT and metadata.get("caption") == caption
                    and metadata.get("identity") == _identity_text(identity)
                    and checksum.matches(path, handle, metadata, names))
    except (OSError, SafetensorError):
        return False


def save_text(path: Path, caption: str, identity: dict[str, str], tensors: dict[str, torch.Tensor]) -> None:
    if not tensors:
        raise ValueError("the text encoder returned no tensors to cache")
    tensors = {k: v.cpu() for k, v in tensors.items()}
    metadata = {"format": FORMAT, "caption": caption, "identity": _identity_text(identity),
                checksum.KEY: checksum.checksums_text(tensors)}
    save_safetensors_atomic(tensors, path, metadata)


def load_text(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))
