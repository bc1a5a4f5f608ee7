"""Which model file a state was trained on, without hashing gigabytes.

A state records its DiT's fingerprint so `--resume` onto another DiT fails at start instead of training a LoRA
against weights it was not made for. Name and mtime are no identity (a copied or moved file is the same model),
and the safetensors header alone is not one either (every fine-tune of one architecture has the same header), so
the fingerprint hashes the header and the first bytes of every tensor: a fine-tune that changed any tensor,
even only the llm_adapter, differs. For the 2B DiT that is ~900 reads of 4 KiB.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

SLICE_BYTES = 4096


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """{"file": absolute path (for messages only), "bytes": size, "sha256": header + each tensor's first bytes}.
    `path` is a safetensors file (the start-up checks made sure)."""
    target = Path(path).resolve()
    digest = hashlib.sha256()
    with open(target, "rb") as handle:
        head = handle.read(8)
        header_bytes = handle.read(int.from_bytes(head, "little"))
        digest.update(head + header_bytes)
        header = json.loads(header_bytes)
        header.pop("__metadata__", None)
        for begin, end in sorted(entry["data_offsets"] for entry in header.values()):
            handle.seek(8 + len(header_bytes) + begin)
            digest.update(handle.read(min(SLICE_BYTES, end - begin)))
    return {"file": str(target), "bytes": target.stat().st_size, "sha256": digest.hexdigest()}


def same_file_contents(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a.get("bytes"), a.get("sha256")) == (b.get("bytes"), b.get("sha256"))
