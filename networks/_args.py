"""Parsing of `--network_args` values, which always arrive as strings.

kohya hands every `key=value` through as a string; LyCORIS tests the raw string's truth, so
`decompose_both=False` turned the option on there (adapter-files.md §4.3). Every boolean here is parsed
as a boolean, and a value that is not one is a `ConfigError` naming the option.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Mapping
from typing import Any

from library.errors import ConfigError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", "none"}


def get_arg(kwargs: Mapping[str, Any], *names: str) -> Any:
    """The value of the first name present (the later names are aliases), else None."""
    for name in names:
        if kwargs.get(name) is not None:
            return kwargs[name]
    return None


def parse_bool(value: Any, name: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"network_args {name}={value!r} is not a boolean; write {name}=true or {name}=false.")


def parse_float(value: Any, name: str, default: float | None) -> float | None:
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"network_args {name}={value!r} is not a number.") from None


def parse_int(value: Any, name: str, default: int) -> int:
    number = parse_float(value, name, default)
    if number != int(number):
        raise ConfigError(f"network_args {name}={value!r} is not a whole number.")
    return int(number)


def parse_patterns(value: Any, name: str) -> list[re.Pattern[str]]:
    """A Python-literal list of regexes (kohya's form), or one bare regex."""
    if value is None:
        return []
    items = value
    if isinstance(value, str):
        text = value.strip()
        try:
            items = ast.literal_eval(text) if text.startswith("[") else [text]
        except (ValueError, SyntaxError):
            raise ConfigError(
                f"network_args {name}={value!r}: write a list such as {name}=['blocks\\.0\\..*']"
            ) from None
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise ConfigError(f"network_args {name}={value!r} must be a list of regular expressions.")
    return [_compile(item, name) for item in items]


def parse_regex_values(value: Any, name: str) -> list[tuple[re.Pattern[str], float]]:
    """kohya's "regex=value,regex=value" form (network_reg_dims / network_reg_alphas)."""
    if value is None or str(value).strip() == "":
        return []
    result = []
    for part in str(value).split(","):
        regex, sep, number = part.strip().rpartition("=")
        if not sep or not regex:
            raise ConfigError(f"network_args {name}: {part.strip()!r} is not of the form regex=value.")
        result.append((_compile(regex, name), parse_float(number, name, None)))
    return result


def first_match(rules: list[tuple[re.Pattern[str], float]], path: str) -> float | None:
    for pattern, number in rules:
        if pattern.fullmatch(path):
            return number
    return None


def _compile(regex: str, name: str) -> re.Pattern[str]:
    try:
        return re.compile(regex)
    except re.error as error:
        raise ConfigError(f"network_args {name}: {regex!r} is not a valid regular expression ({error}).") from None


COMMON_ARGS = frozenset({
    "train_llm_adapter", "train_norm", "include_patterns", "exclude_patterns", "network_reg_dims",
    "network_reg_alphas", "network_reg_lrs", "neuron_dropout", "dropout", "rank_dropout", "module_dropout",
    "llm_adapter_lr", "norm_lr", "verbose",
})


def check_known_args(kwargs: Mapping[str, Any], known: frozenset[str], module_name: str) -> None:
    """An unknown `--network_args` name is a typo or meant for another network: fail now, naming the nearest."""
    for name in kwargs:
        if name not in known:
            nearest = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" Did you mean {nearest[0]}?" if nearest else ""
            raise ConfigError(f"--network_args {name}: {module_name} has no such argument.{hint} "
                              f"It takes: {', '.join(sorted(known))}.")
