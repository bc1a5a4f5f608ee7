"""Pixels as a photo viewer shows them: EXIF orientation applied, 16-bit grey scaled (not clipped) to 8 bits.

kohya trains the stored pixel order (a phone photo lies on its side) and PIL's RGB conversion clips 16-bit grey to
white; ComfyUI's image loader applies the orientation, and a LoRA is judged there. The orientation is read from the
EXIF block PIL finds when it opens the file, so the size used for bucketing (header only) and the decoded pixels
always agree.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that shows the image upright (EXIF 2.3, tag 274)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PIL opens 16-bit grey PNGs as I;16 (older versions: I)


def orientation(image: Image.Image) -> int:
    """The EXIF orientation stored in the file's header (1 = upright, also when there is none)."""
    raw = image.info.get("exif")
    if not raw:
        return 1
    exif = Image.Exif()
    try:
        exif.load(raw)
    except (SyntaxError, ValueError, OSError):  # a broken EXIF block: the pixels as stored
        return 1
    value = exif.get(ORIENTATION_TAG, 1)
    return value if value in _UPRIGHT else 1


def displayed_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as shown: orientations 5-8 turn the image by a quarter."""
    width, height = image.size
    return (height, width) if orientation(image) in (5, 6, 7, 8) else (width, height)


def upright(image: Image.Image, stored_orientation: int) -> Image.Image:
    transpose = _UPRIGHT.get(stored_orientation)
    return image.transpose(transpose) if transpose is not None else image


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit grey -> 8-bit grey by value / 257 (65535 -> 255); other modes unchanged (PIL converts them right)."""
    if image.mode not in _SIXTEEN_BIT:
        return image
    values = np.asarray(image).astype(np.float64)
    return Image.fromarray(np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8), "L")
