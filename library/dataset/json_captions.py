"""Structured JSON captions (`image.json` beside the image), in the forms AnimaLoraToolkit users already have.

A caption is fixed fields first (never shuffled or dropped), then per-category tag lists, each shuffled only within
itself, then an optional natural-language sentence. Three spellings are read (see docs/captions.md):
flat (`{"quality": ..., "character": ..., "appearance": [...], "nl": ...}`), nested
(`{"fixed": {...}, "ai_output": {...}, "from_path": {...}}`) and normalised (`{"meta": {...}, "tags": {...}}`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from library.errors import ConfigError

FIXED_FIELDS = ("quality", "count", "character", "series", "artist")
GROUP_FIELDS = ("appearance", "tags", "environment")


@dataclass(frozen=True)
class StructuredCaption:
    """fixed tags, shuffleable groups, and a trailing sentence."""

    fixed: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]
    nl: str = ""


def _tags(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    if isinstance(value, dict):  # character: {"full": ..., "name": ...}
        return _tags(value.get("full") or value.get("name"), where)
    raise ConfigError(f"{where}: expected a string or a list of strings, found {value!r}.")


def _dedupe(tags: list[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for tag in tags:
        if tag.lower() not in seen:
            seen.add(tag.lower())
            kept.append(tag)
    return kept


def parse_structured(data: Any, source: str) -> StructuredCaption:
    """Any of the three spellings -> StructuredCaption."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a JSON caption must be an object like "
                          '{"character": "...", "appearance": [...], "tags": [...]}.')
    if isinstance(data.get("tags"), dict):  # normalised form
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        fixed_src = groups_src = data["tags"]
        extra_fixed = _tags(meta.get("trigger"), f"{source}: meta.trigger")
        extras: dict[str, list[str]] = {}
    elif "fixed" in data or "ai_output" in data:  # nested form
        fixed_src = {**data.get("ai_output", {}), **data.get("fixed", {})}
        if "character" in data:
            fixed_src["character"] = data["character"]
        groups_src = data.get("ai_output", {})
        path_tags = data.get("from_path", {})
        extras = {"appearance": _tags(path_tags.get("extra_appearance"), f"{source}: from_path.extra_appearance"),
                  "tags": _tags(path_tags.get("extra_tags"), f"{source}: from_path.extra_tags")}
        extra_fixed = []
    else:  # flat form
        fixed_src = groups_src = data
        extras, extra_fixed = {}, []
    fixed = extra_fixed + [t for key in FIXED_FIELDS for t in _tags(fixed_src.get(key), f"{source}: {key}")]
    groups = [_tags(groups_src.get(key), f"{source}: {key}") + extras.get(key, []) for key in GROUP_FIELDS]
    nl = groups_src.get("nl") or ""
    if not isinstance(nl, str):
        raise ConfigError(f"{source}: nl: expected a string, found {nl!r}.")
    return StructuredCaption(tuple(fixed), tuple(tuple(g) for g in groups if g), nl.strip())


def load_json_caption(path: Path) -> StructuredCaption:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: illegal char in file (not UTF-8). Save the caption as UTF-8.") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON: {error}") from None
    return parse_structured(data, str(path))


def render_structured(caption: StructuredCaption, shuffle: bool, tag_dropout: float,
                      rng: random.Random | None) -> str:
    """Fixed fields, then each group (shuffled within itself; dropout keeps at least one tag), then `. nl`."""
    parts = list(caption.fixed)
    for group in caption.groups:
        tags = list(group)
        if shuffle and rng is not None:
            rng.shuffle(tags)
        if tag_dropout > 0 and rng is not None:
            kept = [t for t in tags if rng.random() >= tag_dropout]
            tags = kept or [rng.choice(tags)]
        parts += tags
    text = ", ".join(_dedupe(parts))
    if caption.nl:
        text = f"{text}. {caption.nl}" if text else caption.nl
    return text


def flat_text(caption: StructuredCaption) -> str:
    """The caption with no augmentation: used for tag statistics and as the cacheable text."""
    return render_structured(caption, shuffle=False, tag_dropout=0.0, rng=None)
