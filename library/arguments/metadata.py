"""Model-spec metadata written into the LoRA file (kohya `add_model_spec_arguments`)."""

from __future__ import annotations

import argparse

_FIELDS = {
    "title": "Title of the model (modelspec.title).",
    "author": "Author of the model (modelspec.author).",
    "description": "Description of the model (modelspec.description).",
    "license": "License of the model (modelspec.license).",
    "tags": "Comma-separated tags (modelspec.tags).",
    "usage_hint": "How to use the model (modelspec.usage_hint).",
    "thumbnail": "Thumbnail: a data URL or an image file path (modelspec.thumbnail).",
    "merged_from": "Models this one was merged from (modelspec.merged_from).",
    "trigger_phrase": "Trigger phrase (modelspec.trigger_phrase).",
    "preprocessor": "Preprocessor used (modelspec.preprocessor).",
    "is_negative_embedding": "Whether this is a negative embedding (modelspec.is_negative_embedding).",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model-spec metadata")
    for field, text in _FIELDS.items():
        group.add_argument(f"--metadata_{field}", type=str, default=None, help=text)
