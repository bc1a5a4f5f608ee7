"""Image files: discovery, header-only size checks, and kohya's resize / crop / flip / loss masks to a bucket.

PIL only (no OpenCV). kohya's default "area when shrinking in both directions, lanczos otherwise" maps to PIL's
BOX filter (exact area averaging) and LANCZOS. RGB and alpha are resized separately, as OpenCV does, because PIL
premultiplies alpha when it resizes RGBA and would change the colour of transparent pixels.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from library.dataset.decoding import displayed_size, orientation, to_8bit, upright
from library.dataset.face_crop import FaceCrop, face_geometry
from library.errors import ConfigError

_BASE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
IMAGE_EXTENSIONS = _BASE_EXTENSIONS + tuple(e for e in (".avif", ".jxl") if e in Image.registered_extensions())
INTERPOLATIONS = {"lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST,
                  "bilinear": Image.Resampling.BILINEAR, "linear": Image.Resampling.BILINEAR,
                  "bicubic": Image.Resampling.BICUBIC, "cubic": Image.Resampling.BICUBIC,
                  "area": Image.Resampling.BOX, "box": Image.Resampling.BOX}


def list_images(folder: Path) -> list[Path]:
    """Images directly in `folder` (no recursion), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def unsupported_images(folder: Path) -> list[Path]:
    """Files PIL knows as images that are not trained on (kohya's list has no .gif, .tif, ...): skipped, but counted
    so the user hears of them."""
    known = set(Image.registered_extensions())
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in known and p.suffix.lower() not in IMAGE_EXTENSIONS)


def read_image_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed, from the file header; an unreadable or truncated file is a ConfigError naming
    it."""
    try:
        with Image.open(path) as image:
            size = displayed_size(image)
            image.verify()  # PNG: walks every chunk and checks CRCs; cheap, no decoding
    except Image.DecompressionBombError as error:  # raised by Image.open from the header, before any decoding
        declared = re.search(r"\((\d+) pixels\)", str(error))
        pixels = f"{int(declared.group(1)):,} pixels" if declared else str(error)
        raise ConfigError(f"{path}: its header declares an image of {pixels}, above Pillow's limit of "
                          f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels (a decompression bomb or a damaged header). "
                          f"Shrink it (a longest side of 8192 is plenty for training) or remove it from the folder.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ConfigError(f"{path}: cannot read this image ({error}). Re-save it or remove it from the folder.") from None
    if path.suffix.lower() in (".jpg", ".jpeg"):
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            if b"\xff\xd9" not in handle.read():
                raise ConfigError(f"{path}: this JPEG is truncated (no end-of-image marker). Re-save it or remove it.")
    return size


@dataclass(frozen=True)
class Placement:
    """How one image becomes one training sample: bucket (w, h), resize target (w, h) and options.

    With `face` (bucketing off, face_crop_aug_range, face info in the name) the resize target and crop are drawn per
    step around the face instead (see face_crop.py)."""

    bucket: tuple[int, int]
    resized: tuple[int, int]
    interpolation: str | None = None
    random_crop: bool = False
    alpha_mask: bool = False
    face: FaceCrop | None = None


def _resample(original: tuple[int, int], target: tuple[int, int], interpolation: str | None) -> Image.Resampling:
    if interpolation:
        return INTERPOLATIONS[interpolation.lower()]
    shrinking = original[0] > target[0] and original[1] > target[1]
    return Image.Resampling.BOX if shrinking else Image.Resampling.LANCZOS


def load_pixels(path: Path, alpha_mask: bool) -> tuple[Image.Image, Image.Image | None]:
    """RGB image and (with alpha_mask) its alpha channel, upright and 8-bit (decoding.py says why)."""
    try:
        with Image.open(path) as opened:
            stored_orientation = orientation(opened)
            opened.load()
            image = to_8bit(upright(opened, stored_orientation))
            alpha = None
            if alpha_mask:
                has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
                rgba = image.convert("RGBA") if has_alpha else None
                alpha = rgba.getchannel("A") if rgba is not None else Image.new("L", image.size, 255)
                rgb = (rgba or image).convert("RGB")
            else:
                rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ConfigError(f"{path}: cannot decode this image ({error}). Re-save it or remove it.") from None
    return rgb, alpha


def load_mask(path: Path, size: tuple[int, int]) -> Image.Image:
    """A conditioning mask's red channel (kohya's masked loss reads R), resized to its image's `size` if needed."""
    try:
        with Image.open(path) as image:
            red = to_8bit(upright(image, orientation(image))).convert("RGB").getchannel("R")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ConfigError(f"{path}: cannot decode this mask image ({error}). Re-save it or remove it.") from None
    return red if red.size == size else red.resize(size, _resample(red.size, size, None))


def _crop_offset(excess: int, random_crop: bool, rng: random.Random | None) -> int:
    if excess <= 0:
        return 0
    return rng.randint(0, excess) if random_crop and rng is not None else excess // 2


def plan_geometry(size: tuple[int, int], placement: Placement,
                  rng: random.Random | None) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """(resize target, crop box) for an image of `size`: drawn once per step, then applied to image and masks."""
    if placement.face is not None:
        return face_geometry(size, placement.bucket, placement.face, placement.random_crop, rng)
    width, height = placement.resized
    left = _crop_offset(width - placement.bucket[0], placement.random_crop, rng)
    top = _crop_offset(height - placement.bucket[1], placement.random_crop, rng)
    return placement.resized, (left, top, left + placement.bucket[0], top + placement.bucket[1])


def apply_geometry(image: Image.Image, resized: tuple[int, int], box: tuple[int, int, int, int],
                   interpolation: str | None) -> Image.Image:
    """Resize (if needed) and crop; the filter depends only on the sizes, so image and mask get the same one."""
    if image.size != resized:
        image = image.resize(resized, _resample(image.size, resized, interpolation))
    image = image.crop(box)
    if image.size != (box[2] - box[0], box[3] - box[1]):
        raise RuntimeError(f"internal error, illegal trimmed size: {image.size}, {box}")
    return image


def fit_to_bucket(rgb: Image.Image, alpha: Image.Image | None, placement: Placement,
                  rng: random.Random | None) -> tuple[Image.Image, Image.Image | None, tuple[int, int, int, int]]:
    """Resize to the placement's target, then crop to the bucket (centred, random, or around the face)."""
    resized, box = plan_geometry(rgb.size, placement, rng)
    rgb = apply_geometry(rgb, resized, box, placement.interpolation)
    alpha = apply_geometry(alpha, resized, box, placement.interpolation) if alpha is not None else None
    return rgb, alpha, box


def color_augment(rgb: Image.Image, rng: random.Random) -> Image.Image:
    """kohya's color_aug: with probability 1/3, a hue shift (+-8 deg of 180) or a gamma in [0.95, 1.05]."""
    if rng.random() > 0.33:
        return rgb
    if rng.random() > 0.5:
        hsv = np.asarray(rgb.convert("HSV")).copy()
        shift = int(round(rng.uniform(-8, 8) * 256 / 180))
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + shift) % 256
        return Image.fromarray(hsv, "HSV").convert("RGB")
    gamma = rng.uniform(0.95, 1.05)
    pixels = np.asarray(rgb).astype(np.float32) / 255.0
    return Image.fromarray((np.clip(pixels**gamma, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")


def to_tensor(rgb: Image.Image) -> torch.Tensor:
    """uint8 RGB -> float32 (3, H, W) in [-1, 1]."""
    array = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


def mask_tensor(alpha: Image.Image) -> torch.Tensor:
    """alpha (L) -> float32 (H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(alpha, dtype=np.uint8).copy()).float() / 255.0


def prepare_sample(path: Path, placement: Placement, flip: bool, color_aug: bool, rng: random.Random | None,
                   mask_path: Path | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One image as the model's input: (3, H, W) in [-1, 1] and optional (H, W) loss mask, flipped if asked.

    The loss mask is the alpha mask, the conditioning mask (`mask_path`), or their product; each is resized and
    cropped on its own with the image's geometry, so a cached run (masks made at load time) gives the same."""
    rgb, alpha = load_pixels(path, placement.alpha_mask)
    size = rgb.size
    resized, box = plan_geometry(size, placement, rng)
    rgb = apply_geometry(rgb, resized, box, placement.interpolation)
    masks = [apply_geometry(alpha, resized, box, placement.interpolation)] if alpha is not None else []
    if mask_path is not None:
        masks.append(apply_geometry(load_mask(mask_path, size), resized, box, placement.interpolation))
    if color_aug and rng is not None:
        rgb = color_augment(rgb, rng)
    image = to_tensor(rgb)
    mask = combine_masks([mask_tensor(m) for m in masks])
    if flip:
        image = image.flip(-1)
        mask = mask.flip(-1) if mask is not None else None
    return image, mask


def combine_masks(masks: list[torch.Tensor]) -> torch.Tensor | None:
    """The product of the (H, W) masks given, or None when there are none."""
    result = None
    for mask in masks:
        result = mask if result is None else result * mask
    return result
