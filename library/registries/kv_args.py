"""`key=value` option lists (`--optimizer_args`, `--lr_scheduler_args`) parsed as kohya does: the value is a
Python literal (`betas=(0.9,0.99)`, `weight_decay=0.01`, `decouple=True`).

Unlike kohya, a bad pair is a `ConfigError` that names the pair and the expected form (pitfall 18), and a
value may itself contain `=` (we split at the first one).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any

from library.errors import ConfigError


def parse_kv_args(values: Iterable[str] | str | None, option: str) -> dict[str, Any]:
    """Parse `["k=v", ...]` into a dict of Python literals; raise `ConfigError` naming the bad pair."""
    if values is None:
        return {}
    if isinstance(values, str):
        values = [values]
    parsed: dict[str, Any] = {}
    for pair in values:
        key, sep, text = str(pair).partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(
                f'{option}: {pair!r} is not of the form key=value (e.g. {option} weight_decay=0.01 "betas=(0.9,0.99)").'
            )
        try:
            parsed[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError) as exc:
            raise ConfigError(
                f"{option}: the value of {pair!r} is not a Python literal ({exc.__class__.__name__}). "
                f"Write numbers, True/False/None, tuples like (0.9,0.99) or quoted strings like {key}='text'."
            ) from None
    return parsed
