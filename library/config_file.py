"""`--config_file` (kohya's train-arguments TOML) and `--output_config` (kohya-cli.md §3), a little stricter.

As in kohya: `.toml` is appended when missing; the file may be flat or in tables (each top-level table is
flattened one level and its name ignored; a key repeated in two tables takes the later value); precedence is
command line > file > defaults. Unlike kohya, which accepts anything, every key must be an option (an unknown
key is an error naming the nearest option), and every value is checked against the option's type and choices,
so a typo fails at start-up instead of being ignored. A `store_true` flag set in the file cannot be switched off
from the command line (as in kohya; only `--x/--no-x` options can).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import toml

from library.arguments.parser import invalid_value, nearest_hint
from library.atomic import write_text_atomic
from library.config_kinds import is_dataset_config, load_toml
from library.errors import ConfigError

logger = logging.getLogger(__name__)

ROOT_STYLE_HINT = "python tools/convert_anima_root_to_kohya.py --input"
_NEVER_WRITTEN = {"config_file", "output_config", "wandb_api_key", "huggingface_token"}
_FLAG_ACTIONS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)  # noqa: SLF001


def config_path(name: str) -> Path:
    """kohya's rule: `.toml` is appended when the name does not end with it; relative to the current folder."""
    return Path(name if name.endswith(".toml") else f"{name}.toml")


def _option_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """TOML key -> action: each option's dest and every spelling (aliases included) without leading dashes."""
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public list of actions
        if not action.option_strings or isinstance(action, argparse._HelpAction):  # noqa: SLF001
            continue
        keys[action.dest] = action
        for spelling in action.option_strings:
            if spelling.startswith("--") and not spelling.startswith("--no-"):
                keys[spelling[2:]] = action
    return keys


def read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"--config_file: {path} not found.")
    try:
        data = load_toml(path, "--config_file")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--config_file {path}: not valid TOML: {exc}") from None
    if is_dataset_config(data):
        raise ConfigError(f"--config_file {path}: this is a dataset config ([general] / [[datasets]]); pass it as "
                          f"--dataset_config {path}, and the train arguments TOML as --config_file.")
    return data


def flatten(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """One level of tables merged into one namespace (kohya); a root-style Anima file is recognised and refused."""
    if isinstance(data.get("model"), dict) and isinstance(data.get("training"), dict):
        raise ConfigError(
            f"{path} is an old root-style Anima TOML ([model] and [training] tables). Convert it to kohya's two files "
            f"with: {ROOT_STYLE_HINT} {path}"
        )
    flat: dict[str, Any] = {}
    for key, value in data.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        for inner_key, inner_value in items:
            if inner_key in flat and flat[inner_key] != inner_value:
                logger.warning("%s: %s is set twice; using %r", path, inner_key, inner_value)
            flat[inner_key] = inner_value
    return flat


def _convert_scalar(action: argparse.Action, value: Any, where: str) -> Any:
    kind = action.type
    if isinstance(value, dict | list) or (isinstance(value, bool) and kind is not None and kind is not str):
        raise ConfigError(f"{where}: expected a single value, got {value!r}.")
    if kind is None or kind is str:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}.")
        return str(value)
    if kind is int and isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}.")
        return int(value)
    if kind is float and isinstance(value, int):
        return float(value)
    try:
        return kind(value)
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid value {value!r} ({exc}).") from None


def convert_value(action: argparse.Action, key: str, value: Any, path: Path) -> Any:
    """Run a TOML value through the option's type and choices, as argparse does for the command line."""
    where = f"{path}: {key}"
    if isinstance(action, _FLAG_ACTIONS):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}.")
        return value
    if action.nargs in ("*", "+") or isinstance(action.nargs, int):
        items = value if isinstance(value, list) else [value]
        converted: Any = [_convert_scalar(action, item, where) for item in items]
        checked = converted
    else:
        converted = _convert_scalar(action, value, where)
        checked = [converted]
    if action.choices is not None:
        bad = [item for item in checked if item not in action.choices]
        if bad:
            raise ConfigError(f"{where}: {invalid_value(bad[0], action.choices)}")
    return converted


def load_config_values(parser: argparse.ArgumentParser, path: Path) -> dict[str, Any]:
    """dest -> checked value for every key of the TOML file."""
    actions = _option_actions(parser)
    values: dict[str, Any] = {}
    seen_as: dict[str, str] = {}
    for key, raw in flatten(read_toml(path), path).items():
        action = actions.get(key)
        if action is None:
            raise ConfigError(f"{path}: unknown key `{key}`.{nearest_hint(key, actions, ' See --help for the options.')}")
        value = convert_value(action, key, raw, path)
        if action.dest in values and values[action.dest] != value:
            raise ConfigError(
                f"{path}: `{seen_as[action.dest]}` and `{key}` are the same option with different values."
            )
        values[action.dest], seen_as[action.dest] = value, key
    return values


def _toml_value(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_toml_value(item) for item in value]
    return value


def write_output_config(parser: argparse.ArgumentParser, args: argparse.Namespace, path: Path) -> None:
    """A flat TOML of every argument that differs from its default (kohya `--output_config`); never overwrites."""
    if path.exists():
        raise ConfigError(f"--output_config: {path} already exists; choose another --config_file name or delete it.")
    chosen = {
        dest: _toml_value(value)
        for dest, value in sorted(vars(args).items())
        if dest not in _NEVER_WRITTEN and value is not None and value != parser.get_default(dest)
    }
    write_text_atomic(path, toml.dumps(chosen))
