"""kohya's caption processing (dataset-config.md §5), in kohya's order, with all randomness from a seeded RNG.

Every random choice comes from a `random.Random` seeded by (seed, epoch, batch index, item position), never the
global RNG, so a resumed run (or a DataLoader worker) sees exactly the captions the first run saw.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from library.dataset.blueprint import SubsetParams
from library.dataset.json_captions import StructuredCaption, render_structured

RawCaption = str | StructuredCaption
_WILDCARD = re.compile(r"\{([^}]+)\}")


def item_rng(seed: int, epoch: int, draw_key: str, stream: str) -> random.Random:
    """An RNG for one sample of one epoch (its draw key); `stream` separates caption choices from image
    augmentation."""
    return random.Random(f"{seed}:{epoch}:{draw_key}:{stream}")


@dataclass(frozen=True)
class CaptionOptions:
    """The caption part of a subset's settings."""

    prefix: str | None = None
    suffix: str | None = None
    dropout_rate: float = 0.0
    dropout_every_n_epochs: int = 0
    enable_wildcard: bool = False
    shuffle: bool = False
    separator: str = ","
    keep_tokens: int = 0
    keep_tokens_separator: str = ""
    tag_dropout_rate: float = 0.0
    token_warmup_min: int = 1
    token_warmup_step: float = 0.0
    secondary_separator: str | None = None

    @classmethod
    def from_subset(cls, subset: SubsetParams) -> CaptionOptions:
        return cls(subset.caption_prefix, subset.caption_suffix, subset.caption_dropout_rate,
                   subset.caption_dropout_every_n_epochs, subset.enable_wildcard, subset.shuffle_caption,
                   subset.caption_separator, subset.keep_tokens, subset.keep_tokens_separator,
                   subset.caption_tag_dropout_rate, subset.token_warmup_min, subset.token_warmup_step,
                   subset.secondary_separator)

    def per_step_features(self) -> list[str]:
        """Options that change the caption text from step to step (so its encoding cannot be cached)."""
        names = [("shuffle_caption", self.shuffle), ("caption_tag_dropout_rate", self.tag_dropout_rate > 0),
                 ("enable_wildcard", self.enable_wildcard), ("token_warmup_step", self.token_warmup_step > 0)]
        return [name for name, active in names if active]


def is_dropped(options: CaptionOptions, epoch: int, rng: random.Random) -> bool:
    """Whole-caption dropout: by rate, or on every n-th (1-based) epoch."""
    dropped = options.dropout_rate > 0 and rng.random() < options.dropout_rate
    every = options.dropout_every_n_epochs
    return dropped or (every > 0 and epoch % every == 0)


def _add_prefix_suffix(text: str, options: CaptionOptions) -> str:
    if options.prefix:
        text = options.prefix + " " + text
    if options.suffix:
        text = text + " " + options.suffix
    return text


def _wildcards(text: str, rng: random.Random) -> str:
    if "\n" in text:
        text = rng.choice(text.split("\n"))
    open_mark, close_mark = "\x00(", "\x00)"
    text = text.replace("{{", open_mark).replace("}}", close_mark)
    text = _WILDCARD.sub(lambda match: rng.choice(match.group(1).split("|")), text)
    return text.replace(open_mark, "{").replace(close_mark, "}")


def _split(text: str, options: CaptionOptions) -> tuple[list[str], list[str], list[str]]:
    """-> (fixed prefix tags, flex tags, fixed suffix tags)."""
    def tags(part: str) -> list[str]:
        return [t.strip() for t in part.split(options.separator) if t.strip()]

    sep = options.keep_tokens_separator
    if sep and sep in text:
        fixed_part, flex_part = text.split(sep, 1)
        suffix_part = ""
        if sep in flex_part:
            flex_part, suffix_part = flex_part.split(sep, 1)
        return tags(fixed_part), tags(flex_part), tags(suffix_part)
    all_tags = tags(text)
    keep = max(options.keep_tokens, 0)
    return all_tags[:keep], all_tags[keep:], []


def _warmup_length(options: CaptionOptions, flex: int, step: int, max_train_steps: int) -> int | None:
    warmup = options.token_warmup_step
    if warmup < 1:
        warmup = math.floor(warmup * max_train_steps)
    if warmup and step < warmup:
        return math.floor(step * ((flex - options.token_warmup_min) / warmup)) + options.token_warmup_min
    return None


def _tag_pass(text: str, options: CaptionOptions, rng: random.Random | None, step: int, max_steps: int) -> str:
    fixed, flex, fixed_suffix = _split(text, options)
    if rng is not None:
        length = _warmup_length(options, len(flex), step, max_steps) if options.token_warmup_step > 0 else None
        if length is not None:
            flex = flex[:length]
        if options.shuffle:
            rng.shuffle(flex)
        if options.tag_dropout_rate > 0:
            flex = [t for t in flex if rng.random() >= options.tag_dropout_rate]
    return ", ".join(fixed + flex + fixed_suffix)


def process_caption(raw: RawCaption, options: CaptionOptions, epoch: int, rng: random.Random,
                    step: int = 0, max_train_steps: int = 0) -> str:
    """The caption the model sees for this (epoch, batch index, position); `rng` is that item's RNG."""
    if is_dropped(options, epoch, rng):
        return ""
    return render_caption(raw, options, rng, step, max_train_steps)


def render_caption(raw: RawCaption, options: CaptionOptions, rng: random.Random | None,
                   step: int = 0, max_train_steps: int = 0) -> str:
    """Everything after dropout. With `rng=None` nothing random happens: the text that text caches are made of."""
    if isinstance(raw, StructuredCaption):
        text = render_structured(raw, options.shuffle, options.tag_dropout_rate, rng)
        text = _add_prefix_suffix(text, options)
    else:
        text = _add_prefix_suffix(raw, options)
        text = _wildcards(text, rng) if options.enable_wildcard and rng is not None else text.split("\n")[0]
        per_step = options.shuffle or options.token_warmup_step > 0 or options.tag_dropout_rate > 0
        separator_used = bool(options.keep_tokens_separator) and options.keep_tokens_separator in text
        if per_step or separator_used:
            text = _tag_pass(text, options, rng, step, max_train_steps)
    if options.secondary_separator:
        text = text.replace(options.secondary_separator, options.separator)
    return text


def static_caption(raw: RawCaption, options: CaptionOptions) -> str:
    """The deterministic caption (prefix/suffix, first line, fixed order): what a text cache stores."""
    return render_caption(raw, options, None)
