"""Latent cache files: one safetensors file per image, one set of keys per bucket it is trained at.

The file records what it was made from (the encoder identity the trainer gives, the image's byte size and mtime,
and per bucket the resize target and interpolation), so a stale or foreign file is rebuilt instead of silently
training on the wrong latents; a checksum of each tensor's data (library/cache/checksum.py) catches a file
corrupted on disk. See docs/caches.md for names and keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from library.atomic import save_safetensors_atomic
from library.cache import checksum

# v2: pixels upright (EXIF) and 16-bit grey scaled; v3: checksums of the tensors. Older files are rebuilt.
FORMAT = "sd-scripts-anima latents v3"


@dataclass(frozen=True)
class LatentSpec:
    """What one cached entry is: the bucket (w, h), the resize target, and which extras it needs."""

    bucket: tuple[int, int]
    resized: tuple[int, int]
    interpolation: str | None
    flip: bool
    alpha: bool

    def keys(self) -> dict[str, str]:
        tag = f"{self.bucket[1]}x{self.bucket[0]}"
        return {"latents": f"latents_{tag}", "flipped": f"latents_flipped_{tag}", "alpha": f"alpha_mask_{tag}",
                "record": f"bucket_{tag}"}

    def record(self) -> str:
        return json.dumps({"bucket": list(self.bucket), "resized": list(self.resized),
                           "interpolation": self.interpolation})

    def required(self) -> list[str]:
        keys = self.keys()
        return [keys["latents"]] + ([keys["flipped"]] if self.flip else []) + ([keys["alpha"]] if self.alpha else [])


def latent_cache_path(image: Path, size: tuple[int, int], suffix: str = "", cache_dir: str | None = None) -> Path:
    """`<stem>_<W>x<H><suffix>_latents.safetensors` beside the image, or in `cache_dir`; W x H = original size."""
    folder = Path(cache_dir) if cache_dir else image.parent
    return folder / f"{image.stem}_{size[0]:04d}x{size[1]:04d}{suffix}_latents.safetensors"


def identity_text(identity: dict[str, str]) -> str:
    return json.dumps(identity, sort_keys=True)


def image_stamp(image: Path) -> str:
    stat = image.stat()
    return json.dumps({"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns})


def _data_intact(path: Path, names: list[str]) -> bool:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return checksum.matches(path, handle, handle.metadata() or {}, names)
    except (OSError, SafetensorError):
        return False


def _header(path: Path) -> tuple[dict[str, str], set[str]] | None:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}, set(handle.keys())
    except (OSError, SafetensorError):
        return None


def _same_source(metadata: dict[str, str], image: Path, identity: dict[str, str]) -> bool:
    return (metadata.get("format") == FORMAT and metadata.get("identity") == identity_text(identity)
            and metadata.get("image") == image_stamp(image))


def is_valid(path: Path, image: Path, identity: dict[str, str], spec: LatentSpec, trust: bool = False) -> bool:
    """True when `path` holds this spec's tensors made from this image by this encoder.
    `trust` (--skip_cache_check) only checks that the keys are there (no record, no checksum)."""
    header = _header(path) if path.is_file() else None
    if header is None:
        return False
    metadata, keys = header
    if not all(key in keys for key in spec.required()):
        return False
    return trust or (_same_source(metadata, image, identity) and metadata.get(spec.keys()["record"]) == spec.record()
                     and _data_intact(path, spec.required()))


def save_latents(path: Path, image: Path, identity: dict[str, str], spec: LatentSpec, latents: torch.Tensor,
                 flipped: torch.Tensor | None = None, alpha_mask: torch.Tensor | None = None) -> None:
    """Write this bucket's entry, keeping other buckets' entries (and their checksums) when the file is from the same
    source."""
    tensors: dict[str, torch.Tensor] = {}
    new: dict[str, torch.Tensor] = {}
    metadata = {"format": FORMAT, "identity": identity_text(identity), "image": image_stamp(image)}
    header = _header(path) if path.is_file() else None
    if header is not None and _same_source(header[0], image, identity):
        tensors = load_file(str(path))
        metadata = {**header[0], **metadata}
    keys = spec.keys()
    new[keys["latents"]] = latents.float().cpu()
    if flipped is not None:
        new[keys["flipped"]] = flipped.float().cpu()
    if alpha_mask is not None:
        new[keys["alpha"]] = alpha_mask.float().cpu()
    tensors.update(new)
    metadata[keys["record"]] = spec.record()
    metadata[checksum.KEY] = checksum.checksums_text(new, metadata.get(checksum.KEY))
    save_safetensors_atomic(tensors, path, metadata)


def load_latents(path: Path, spec: LatentSpec, flipped: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """-> (latents or their flipped copy, alpha mask or None)."""
    keys = spec.keys()
    name = keys["flipped"] if flipped else keys["latents"]
    with safe_open(str(path), framework="pt") as handle:
        present = set(handle.keys())
        if name not in present:
            raise FileNotFoundError(f"{name} not found in {path}; delete the file to rebuild the cache.")
        latents = handle.get_tensor(name)
        mask = handle.get_tensor(keys["alpha"]) if spec.alpha else None
    return latents, mask
