"""Checksums of cached tensors, kept in the file's metadata (key `checksums`: JSON {tensor name: blake2b hex}).

A file whose header is intact but whose data changed on disk (a flipped bit, a bad copy) would otherwise be trusted
by its record and train on garbage, or on NaN; with the checksum it is stale and encoded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)
KEY = "checksums"


def tensor_checksum(tensor: torch.Tensor) -> str:
    """blake2b of the tensor's bytes (any dtype, as safetensors stores them)."""
    data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    return hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()


def checksums_text(tensors: dict[str, torch.Tensor], earlier: str | None = None) -> str:
    """The metadata value for `tensors`; names absent from `tensors` keep their entry in `earlier` (a file rewritten
    with tensors it read back keeps their old checksums, so a corrupted one stays detectable)."""
    old = json.loads(earlier) if earlier else {}
    return json.dumps({**old, **{name: tensor_checksum(t) for name, t in tensors.items()}}, sort_keys=True)


def matches(path: Path, handle: Any, metadata: dict[str, str], names: Iterable[str]) -> bool:
    """True when each named tensor of the open safetensors `handle` has the checksum its metadata records; a
    mismatch is a warning naming the file (the caller encodes it again), a file without checksums is just stale."""
    recorded = json.loads(metadata.get(KEY) or "{}")
    for name in names:
        if name not in recorded:
            return False
        if tensor_checksum(handle.get_tensor(name)) != recorded[name]:
            logger.warning("cache file %s: the data of %s does not match its checksum (changed or corrupted on "
                           "disk); encoding it again", path, name)
            return False
    return True
