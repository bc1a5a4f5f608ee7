"""`[dataset]` of a root-style file -> one `[[datasets]]` with one subset per image folder.

The old trainer scanned `data_dir` recursively and, when subfolders were named `<N>_<name>`, gave their
images N repeats (README decision 9). kohya reads a subset's folder only (no recursion, no name parsing),
so the converter walks the tree now and writes each image folder as a subset with its repeat count.
Captions were `<image stem>.txt` there, so `.txt` is written unless the file says otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

from _root_mapping import Section

from library.dataset.images import IMAGE_EXTENSIONS
from library.errors import ConfigError

REPEATS_FOLDER = re.compile(r"(\d+)_.+")
GENERAL_KEYS = (  # old key -> [general] key, type
    ("shuffle_caption", "shuffle_caption", bool),
    ("keep_tokens", "keep_tokens", int),
    ("keep_tokens_separator", "keep_tokens_separator", str),
    ("caption_extension", "caption_extension", str),
    ("flip_augment", "flip_aug", bool),
)
BUCKET_KEYS = (  # old key -> [[datasets]] key, the old trainer's default
    ("min_reso", "min_bucket_reso", 512),
    ("max_reso", "max_bucket_reso", 2048),
    ("reso_step", "bucket_reso_steps", 64),
)


def _folder_repeats(folder: Path, root: Path) -> int | None:
    """N of the nearest `<N>_<name>` folder between `folder` and `root` (root itself excluded)."""
    for part in reversed(folder.relative_to(root).parts):
        match = REPEATS_FOLDER.fullmatch(part)
        if match:
            return int(match.group(1))
    return None


def image_folders(root: Path) -> list[Path]:
    """Every folder under `root` (itself included) holding images; hidden folders (caches) are skipped."""
    folders = {
        path.parent
        for path in root.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
        and path.is_file()
    }
    return sorted(folders)


def subsets_for(root: Path, repeats: int) -> tuple[list[dict], list[str]]:
    """(subsets, notes): one subset per image folder; `N_name` folders set N, else `repeats` applies;
    when `N_name` folders exist, images outside them get 1 (the old trainer then ignored `repeats`)."""
    folders = image_folders(root)
    counts = {folder: _folder_repeats(folder, root) for folder in folders}
    named = any(count is not None for count in counts.values())
    fallback = 1 if named else repeats
    subsets = [{"image_dir": str(folder), "num_repeats": fallback if count is None else count}
               for folder, count in counts.items()]
    notes = []
    if named and repeats != 1:
        notes.append(f"dataset.repeats = {repeats} is not used: the <N>_<name> folders set the repeats, as in "
                     "the old trainer.")
    loose = [str(folder) for folder, count in counts.items() if count is None]
    if named and loose:
        notes.append("Folders outside any <N>_<name> folder repeat once: " + ", ".join(loose) + ".")
    return subsets, notes


def map_dataset(section: Section) -> None:
    conv = section.conv
    data_dir = section.get("data_dir")
    if data_dir is None:
        raise ConfigError(f"{conv.source}: [dataset] data_dir is not set. Add the folder of training images "
                          "(data_dir = \"path/to/images\") and convert again.")
    root = Path(conv.path(data_dir, section.key("data_dir")))
    repeats = section.value("repeats", int) or 1
    subsets, notes = subsets_for(root, repeats) if root.is_dir() else ([], [])
    if not subsets:
        subsets = [{"image_dir": str(root), "num_repeats": repeats}]
        notes = [f"dataset.data_dir {root} has no images yet, so <N>_<name> subfolders were not expanded: only "
                 "images directly in it are used. Convert again once the images are in place."]
    conv.subsets, conv.notes = subsets, conv.notes + notes
    for key, target, kind in GENERAL_KEYS:
        value = section.value(key, kind)
        if value is not None:
            conv.general[target] = value
    if "caption_extension" not in conv.general:  # kohya's default is .caption
        conv.general["caption_extension"] = conv.default("caption_extension", ".txt", "the old caption files")
    resolution = section.get("resolution")
    if isinstance(resolution, list):
        conv.dataset["resolution"] = [int(side) for side in resolution]
    else:
        conv.dataset["resolution"] = section.value("resolution", int, "resolution", 1024)
    conv.dataset["enable_bucket"] = True  # the old trainer always bucketed
    resolution = conv.dataset["resolution"]
    side = min(resolution) if isinstance(resolution, list) else resolution
    for key, target, r_default in BUCKET_KEYS:
        if target == "min_bucket_reso":  # a default must never exclude the resolution itself
            r_default = min(r_default, side)
        elif target == "max_bucket_reso":
            r_default = max(r_default, side)
        conv.dataset[target] = section.value(key, int, target, r_default)
    if section.has("max_ar"):
        conv.skip(section.key("max_ar"), "buckets have no aspect-ratio limit here; they span min_bucket_reso.."
                  "max_bucket_reso")
    if section.value("cache_latents", bool):
        conv.train_args["cache_latents"] = True
    if section.has("cache_dir"):
        conv.skip(section.key("cache_dir"), "latents are cached in memory, or next to the images with "
                  "cache_latents_to_disk = true")
    if section.value("shuffle_caption_per_epoch", bool):
        conv.skip(section.key("shuffle_caption_per_epoch"), "the old trainer ignored it too; shuffle_caption "
                  "already reshuffles every time an image is used")
