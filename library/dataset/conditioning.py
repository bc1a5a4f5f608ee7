"""kohya's `conditioning_data_dir` masked loss (`--masked_loss`): one mask image per training image, same stem.

The mask's red channel / 255 weights the loss of its image (kohya reads R of the conditioning image). Masks are
paired with images when the dataset is built, so a missing one fails before any model loads. With cached latents
the mask is made at load time from the mask file, with the same (centre) crop the cache used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from library.dataset.images import (
    Placement,
    apply_geometry,
    list_images,
    load_mask,
    mask_tensor,
    plan_geometry,
    read_image_size,
)
from library.dataset.sources import ImageItem
from library.errors import ConfigError

logger = logging.getLogger(__name__)


def attach_masks(items: list[ImageItem], folder_name: str, where: str) -> None:
    """Set `mask_path` on every item from `folder_name`; a missing folder or mask is a ConfigError naming both."""
    folder = Path(folder_name).absolute()
    if not folder.is_dir():
        raise ConfigError(f"{where}: conditioning_data_dir '{folder_name}' not found. It must hold one mask image "
                          "per training image, with the same file name stem.")
    by_stem: dict[str, Path] = {}
    for mask in list_images(folder):
        by_stem.setdefault(mask.stem, mask)
    missing = []
    for item in items:
        item.mask_path = by_stem.get(item.path.stem)
        if item.mask_path is None:
            missing.append(item.path)
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        names = ", ".join(str(p) for p in missing[:5]) + more
        raise ConfigError(f"{where}: missing conditioning data for {len(missing)} images / 制御用画像が見つかりませんでした: "
                          f"no mask named like {names} in conditioning_data_dir {folder}. Add a mask image with "
                          "the same stem (any image extension) for each.")
    used = {item.mask_path for item in items}
    for mask in sorted(p for p in used if p is not None):
        read_image_size(mask)  # a truncated mask fails now, naming it, not mid-training
    extra = [p for p in by_stem.values() if p not in used]
    if extra:
        logger.warning("%s: extra conditioning data for %d images (no training image with that stem): %s", where,
                       len(extra), ", ".join(str(p) for p in extra[:5]))


def cached_mask(item: ImageItem, mask_path: Path, placement: Placement, flip: bool) -> torch.Tensor:
    """The mask for a cached sample: the deterministic geometry (latent caching forbids random and face crops),
    so it equals the mask the uncached path makes for the same image."""
    resized, box = plan_geometry(item.size, placement, None)
    mask = mask_tensor(apply_geometry(load_mask(mask_path, item.size), resized, box, placement.interpolation))
    return mask.flip(-1) if flip else mask
