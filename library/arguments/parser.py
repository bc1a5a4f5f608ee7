"""The command line's errors in the TOML path's style (issue 24 point 4): one `error:` line naming the option, with
the nearest option name or the valid values, exit code 2, and no usage block (that is for `--help`, which also shows
each option's default).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable
from typing import Any, NoReturn

from library.errors import ConfigError


def nearest_hint(name: str, names: Iterable[str], fallback: str = "") -> str:
    """` Did you mean `x`?` for the closest of `names`, or `fallback` when none is close."""
    near = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f" Did you mean `{near[0]}`?" if near else fallback


def invalid_value(value: Any, choices: Iterable[Any]) -> str:
    """`invalid value 'x'. Did you mean `y`? Valid values: ...` for a value outside an option's choices."""
    valid = [str(c) for c in choices if c is not None]
    return f"invalid value {value!r}.{nearest_hint(str(value), valid)} Valid values: {', '.join(valid)}."


class DefaultsFormatter(argparse.HelpFormatter):
    """`--help` appends `(default: x)` to each option that has a default (unset ones and off flags say nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default in (None, False, argparse.SUPPRESS) or not action.option_strings
        return text if unset or "%(default)" in text else f"{text} (default: %(default)s)"


class OptionParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are `ConfigError`s, so `main` prints them as one line and exits 2."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(formatter_class=DefaultsFormatter, allow_abbrev=False, **kwargs)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            raise argparse.ArgumentError(action, invalid_value(value, action.choices))

    def error(self, message: str) -> NoReturn:
        prefix, unknown = "unrecognized arguments: ", message.partition("unrecognized arguments: ")[2]
        if message.startswith(prefix):
            raise ConfigError(self._unknown_message(unknown.split()))
        raise ConfigError(message.removeprefix("argument "))

    def _unknown_message(self, words: list[str]) -> str:
        options = [w for w in words if w.startswith("-")]
        if not options:
            return (f"unexpected value `{words[0]}` on the command line: every value follows its option "
                    f"(e.g. --output_dir OUT); quote a value that holds spaces.")
        name = options[0].partition("=")[0]
        spellings = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        return f"unknown option `{name}`.{nearest_hint(name, spellings, ' See --help for the options.')}"
