"""Where the images and captions of a subset come from: DreamBooth folders or fine-tuning metadata files.

Everything the run will read is checked here, before any model loads: folders exist, images open, captions
decode. Problems a user would want to know about but that do not stop training are warnings (kohya's wording).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from library.atomic import write_text_atomic
from library.dataset.blueprint import SubsetParams
from library.dataset.captions import RawCaption
from library.dataset.images import IMAGE_EXTENSIONS, list_images, read_image_size, unsupported_images
from library.dataset.json_captions import load_json_caption
from library.errors import ConfigError

logger = logging.getLogger(__name__)
CACHE_INFO_FILE = "metadata_cache.json"


@dataclass
class ImageItem:
    """One image of one subset (repeats are counted, not copied); `mask_path` is its conditioning mask, if any."""

    path: Path
    caption: RawCaption
    size: tuple[int, int]
    subset: int
    num_repeats: int
    is_reg: bool = False
    mask_path: Path | None = None


def _read_text_caption(path: Path, wildcard: bool) -> str:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: illegal char in file (not UTF-8). Save the caption as UTF-8.") from None
    if wildcard:
        return "\n".join(line.strip() for line in lines if line.strip())
    return lines[0].strip() if lines else ""


def _caption_file(image: Path, extension: str) -> Path | None:
    candidates = [image.with_name(image.stem + extension)]
    parts = image.stem.split("_")
    if len(parts) >= 5:  # face-crop naming: name_cx_cy_w_h
        candidates.append(image.with_name("_".join(parts[:-4]) + extension))
    return next((c for c in candidates if c.is_file()), None)


def _dreambooth_caption(image: Path, subset: SubsetParams, missing: list[Path], empty: list[Path]) -> RawCaption:
    """`<stem><caption_extension>`, else `<stem>.json`, else class_tokens (with a warning)."""
    extension = subset.caption_extension
    found = _caption_file(image, extension)
    if extension == ".json" and found is not None:
        return load_json_caption(found)
    if found is None and (structured := _caption_file(image, ".json")) is not None:
        return load_json_caption(structured)
    if found is not None:
        text = _read_text_caption(found, subset.enable_wildcard)
        if text:
            return text
        empty.append(found)
    else:
        missing.append(image)
    return subset.class_tokens or ""


def _warn_captions(folder: str, subset: SubsetParams, missing: list[Path], empty: list[Path]) -> None:
    if empty:
        logger.warning("%s: %d caption files are empty; using %s: %s", folder, len(empty),
                       f"class_tokens '{subset.class_tokens}'" if subset.class_tokens else "an empty caption",
                       ", ".join(str(p) for p in empty[:5]))
    if not missing:
        return
    if subset.class_tokens:
        logger.info("%s: %d images have no %s caption; using class_tokens '%s'", folder, len(missing),
                    subset.caption_extension, subset.class_tokens)
        return
    logger.warning("No caption file found for %d images in %s (caption_extension '%s'); training them with an empty "
                   "caption: %s", len(missing), folder, subset.caption_extension,
                   ", ".join(str(p) for p in missing[:5]))
    other = sorted({p.suffix for p in Path(folder).iterdir() if p.suffix in (".txt", ".caption", ".json")})
    if other:
        logger.warning("%s holds %s files: set caption_extension = \"%s\" if those are the captions.", folder,
                       "/".join(other), other[0])


def _load_cache_info(folder: Path, subset: SubsetParams, index: int) -> list[ImageItem] | None:
    file = folder / CACHE_INFO_FILE
    if not (subset.cache_info and file.is_file()):
        return None
    items = []
    for path, info in json.loads(file.read_text(encoding="utf-8")).items():
        items.append(ImageItem(Path(path), str(info["caption"]), tuple(info["resolution"]), index, subset.num_repeats,
                               subset.is_reg))
    return items


def _save_cache_info(folder: Path, items: list[ImageItem]) -> None:
    """Only plain-text captions are cached; a folder with structured JSON captions is always re-read."""
    if any(not isinstance(i.caption, str) for i in items):
        logger.info("%s: cache_info skipped (structured JSON captions are always re-read)", folder)
        return
    data = {str(i.path): {"caption": i.caption, "resolution": list(i.size)} for i in items}
    write_text_atomic(folder / CACHE_INFO_FILE, json.dumps(data, ensure_ascii=False, indent=1))


def dreambooth_items(subset: SubsetParams, index: int, where: str) -> list[ImageItem]:
    """Images directly in image_dir, with their captions and sizes."""
    folder = Path(subset.image_dir or "").absolute()
    if not folder.is_dir():
        kind = "is a file, not a folder" if folder.is_file() else "not found"
        raise ConfigError(f"{where}: image_dir '{subset.image_dir}' {kind}. Check the path (relative paths are "
                          "relative to the current folder).")
    cached = _load_cache_info(folder, subset, index)
    if cached is not None:
        return cached
    missing: list[Path] = []
    empty: list[Path] = []
    items = [ImageItem(image, _dreambooth_caption(image, subset, missing, empty), read_image_size(image), index,
                       subset.num_repeats, subset.is_reg) for image in list_images(folder)]
    _warn_captions(str(folder), subset, missing, empty)
    if skipped := unsupported_images(folder):
        kinds = "/".join(sorted({p.suffix.lower() for p in skipped}))
        logger.warning("%s: %d files skipped: the trainer does not read %s images (it reads %s). Convert them to PNG "
                       "to train on them: %s", folder, len(skipped), kinds, "/".join(IMAGE_EXTENSIONS),
                       ", ".join(p.name for p in skipped[:5]))
    if subset.cache_info and items:
        _save_cache_info(folder, items)
    return items


def _metadata_entries(file: Path, where: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        text = file.read_text(encoding="utf-8-sig")
        if file.suffix.lower() == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            return [(str(row.get("image_path", "")), row) for row in rows]
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{where}: metadata_file {file} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: metadata_file {file} must be a JSON object keyed by image path.")
    return list(data.items())


def _find_image(key: str, image_dir: str | None, file: Path, where: str) -> Path:
    path = Path(key)
    if not path.is_absolute():
        if not image_dir:
            raise ConfigError(f"{where}: image_dir is required when image paths are relative ('{key}' in {file}).")
        path = Path(image_dir) / key
    path = path.absolute()
    if path.is_file():
        return path
    for extension in IMAGE_EXTENSIONS:
        for candidate in (path.with_name(path.name + extension), path.with_name(path.name + extension.upper())):
            if candidate.is_file():
                return candidate
    raise ConfigError(f"{where}: image '{key}' listed in {file} not found (looked for {path}).")


def finetune_items(subset: SubsetParams, index: int, where: str) -> list[ImageItem]:
    """Images and captions listed in a `.json` / `.jsonl` metadata file."""
    file = Path(subset.metadata_file or "")
    if not file.is_file():
        raise ConfigError(f"{where}: no metadata / metadata_file not found: {subset.metadata_file}.")
    if subset.image_dir and not Path(subset.image_dir).is_dir():
        raise ConfigError(f"{where}: image_dir '{subset.image_dir}' not found.")
    items, empty = [], []
    for key, entry in _metadata_entries(file, where):
        path = _find_image(key, subset.image_dir, file, where)
        caption, tags = entry.get("caption"), entry.get("tags")
        text = caption or tags or ""
        if caption and tags:
            text = caption + subset.caption_separator + " " + tags
        if not text:
            empty.append(key)
        items.append(ImageItem(path, str(text), read_image_size(path), index, subset.num_repeats))
    if empty:
        logger.warning("%s: %d images in %s have no caption or tags: %s", where, len(empty), file,
                       ", ".join(empty[:5]))
    return items


def balance_regularization(train: list[ImageItem], reg: list[ImageItem]) -> list[ImageItem]:
    """kohya's rule: register reg images until they (with repeats) match the train images; extra repeats
    are handed out round-robin when there are too few, unused reg images are dropped when there are too many."""
    if not reg:
        return []
    target = sum(i.num_repeats for i in train)
    used: list[ImageItem] = []
    count = 0
    first = True
    while count < target:
        for item in reg:
            if first:
                used.append(item)
                count += item.num_repeats
            else:
                item.num_repeats += 1
                count += 1
            if count >= target:
                break
        first = False
    if len(used) < len(reg):
        logger.warning("some of reg images are not used: %d of %d", len(reg) - len(used), len(reg))
    return used
