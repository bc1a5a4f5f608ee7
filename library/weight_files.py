"""Whole-file checks of weight files that load no tensor: a safetensors header against the file's size (reads the
header only), and a torch.save zip archive's directory and checksums (reads each entry once, unpickles nothing).

safetensors: 8 bytes little-endian header length N, N bytes of JSON {key: {dtype, shape, data_offsets}}, then the
data. torch.save (since torch 1.6) writes an uncompressed zip whose entries carry CRCs. A cut-off download or a
file of another kind fails here with the reason, at start-up, instead of inside the loader after the models are in
memory.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 100_000_000  # what the safetensors library itself accepts


def read_safetensors_header(path: str | os.PathLike) -> dict[str, Any]:
    """The tensor entries (`__metadata__` removed); ValueError with the reason when the file is not whole."""
    size = Path(path).stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ValueError(f"only {size} bytes, too short for a safetensors file")
        if head.startswith((b"PK\x03\x04", b"\x80")):
            raise ValueError("it is a PyTorch pickle (torch.save .pt / .ckpt / .bin), not a safetensors file")
        length = int.from_bytes(head, "little")
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"its first 8 bytes declare a {length}-byte header, so it is not a safetensors file "
                             f"(a pickle .pt / .ckpt, or a damaged file)")
        if 8 + length > size:
            raise ValueError(f"its header needs {8 + length} bytes but the file has only {size}: it is truncated")
        try:
            header = json.loads(handle.read(length))
            header.pop("__metadata__", None)
            spans = [tuple(entry["data_offsets"]) for entry in header.values()]
            end = max((stop for _, stop in spans), default=0)
            broken = [span for span in spans if len(span) != 2 or not 0 <= span[0] <= span[1]]
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError) as error:
            raise ValueError(f"its header is not safetensors JSON ({error})") from None
    if broken:
        raise ValueError(f"its header has invalid data offsets {broken[0]}")
    if 8 + length + end > size:
        raise ValueError(f"its tensors need {8 + length + end} bytes but the file has only {size}: it is truncated")
    return header


def torch_archive_problem(path: str | os.PathLike) -> str | None:
    """Why a torch.save file is not a whole zip (truncated: no central directory; corrupt: a CRC mismatch), or None.
    Nothing is unpickled."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as error:
        return f"not a readable torch.save archive: {error}"
    return f"checksum mismatch in {bad}" if bad else None


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """Why `read_safetensors_header` refuses the file, or None."""
    try:
        read_safetensors_header(path)
    except (OSError, ValueError) as error:
        return str(error)
    return None


def torch_file_problem(path: str | os.PathLike) -> str | None:
    """`torch_archive_problem`, except that a pre-1.6 (non-zip) torch.save pickle passes: torch.load still reads
    it, and nothing checks it short of unpickling."""
    with open(path, "rb") as handle:
        legacy = handle.read(1) == b"\x80"
    return None if legacy else torch_archive_problem(path)
