"""kohya's face crop: with bucketing off, an image named `<name>_<cx>_<cy>_<w>_<h>.<ext>` (face centre and size in
pixels) is scaled by a random factor and cropped around the face to the resolution.

The scale is drawn so that the face's longer side becomes 1/hi .. 1/lo of the resolution's shorter side (never
upscaling, never below "the image just covers the resolution"); the crop centres the face, with kohya's small jitter
(or, with random_crop, kohya's wide random shift that brings in background). Only the geometry lives here: the
caller applies the same (resized size, crop box) to the image and to its masks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FaceCrop:
    """The face box from the file name and the subset's face_crop_aug_range (lo, hi)."""

    center: tuple[int, int]
    size: tuple[int, int]
    aug_range: tuple[float, float]


def face_from_name(path: Path, aug_range: tuple[float, float] | None) -> FaceCrop | None:
    """The face named by the last four `_` parts of the stem, or None (no range, or no usable face info)."""
    if aug_range is None:
        return None
    parts = path.stem.split("_")
    if len(parts) < 5:
        return None
    try:
        cx, cy, w, h = (int(p) for p in parts[-4:])
    except ValueError:
        return None
    if cx <= 0 or max(w, h) <= 0:  # kohya uses face info only when cx > 0; a zero-size face has no scale
        return None
    return FaceCrop((cx, cy), (w, h), aug_range)


def _scale(size: tuple[int, int], target: tuple[int, int], face: FaceCrop, rng: random.Random | None) -> float:
    width, height = size
    face_size = max(face.size)
    short = min(target)
    lo, hi = face.aug_range
    cover = max(target[1] / height, target[0] / width)  # the smallest scale that still covers the resolution
    min_scale = min(1.0, max(cover, short / (face_size * hi)))
    max_scale = min(1.0, max(min_scale, short / (face_size * lo)))
    if min_scale >= max_scale or rng is None:
        return min_scale
    return rng.uniform(min_scale, max_scale)


def _offset(length: int, target: int, short: int, face_p: int, face: FaceCrop, random_crop: bool,
            rng: random.Random | None) -> int:
    """Crop start on one axis; the jitter uses the unscaled face size, as kohya does."""
    start = face_p - target // 2
    face_size = max(face.size)
    if rng is not None and random_crop:
        spread = max(length - face_p, face_p)
        start += rng.randint(0, spread) + rng.randint(0, spread) - spread
    elif rng is not None and face.aug_range[0] != face.aug_range[1] and face_size > short // 10 and face_size >= 40:
        start += rng.randint(-face_size // 20, face_size // 20)
    return max(0, min(start, length - target))


def face_geometry(size: tuple[int, int], target: tuple[int, int], face: FaceCrop, random_crop: bool,
                  rng: random.Random | None) -> tuple[tuple[int, int], Box]:
    """-> (size to resize the image to, crop box (l, t, r, b) in that resized image) giving exactly `target`."""
    if size == target:
        return size, (0, 0, *size)
    scale = _scale(size, target, face, rng)
    resized = (int(size[0] * scale + 0.5), int(size[1] * scale + 0.5))
    if resized[0] < target[0] or resized[1] < target[1]:
        raise RuntimeError(f"internal error. small scale {scale}, {size[0]}*{size[1]}")
    cx, cy = (int(p * scale + 0.5) for p in face.center)
    short = min(target)
    top = _offset(resized[1], target[1], short, cy, face, random_crop, rng)  # kohya: height first, then width
    left = _offset(resized[0], target[0], short, cx, face, random_crop, rng)
    return resized, (left, top, left + target[0], top + target[1])
