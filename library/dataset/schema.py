"""The kohya dataset.toml schema (`[general]`, `[[datasets]]`, `[[datasets.subsets]]`), checked with voluptuous.

Every key kohya accepts is accepted at the same levels. Errors are `ConfigError`s that name the file, the table
(`datasets[0].subsets[1]`), the key and, for an unknown key, the nearest valid one, because a kohya user's first
run usually fails on a typo, not on a concept. Types are a little kinder than kohya's: an int is accepted where a
float is expected, and a whole float where an int is expected.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import voluptuous as vol

from library.config_kinds import is_train_args, load_toml
from library.errors import ConfigError


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__) + f" ({value!r})"


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise vol.Invalid(f"expected an integer, found {_type_name(value)}")


def _float(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise vol.Invalid(f"expected a number, found {_type_name(value)}")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise vol.Invalid(f"expected true or false, found {_type_name(value)}")


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise vol.Invalid(f'expected a string (in quotes), found {_type_name(value)}')


def _table(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    raise vol.Invalid(f"expected a table, found {_type_name(value)}")


def parse_resolution(value: Any) -> tuple[int, int]:
    """`512`, `[768, 512]`, `"512"` or `"768,512"` -> (width, height)."""
    if isinstance(value, str):
        try:
            value = [int(part) for part in value.split(",")]
        except ValueError:
            raise vol.Invalid(f"expected a size like 1024 or [1024, 768], found {value!r}") from None
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, (list, tuple)) and len(value) == 2:
        width, height = (_int(v) for v in value)
    else:
        width = height = _int(value) if not isinstance(value, (list, tuple)) else -1
    if width <= 0 or height <= 0:
        raise vol.Invalid(f"expected a size like 1024 or [1024, 768] (positive), found {_type_name(value)}")
    return width, height


def parse_two_floats(value: Any) -> tuple[float, float]:
    """face_crop_aug_range: `[a, b]` or the CLI's `"a,b"`."""
    if isinstance(value, str):
        value = value.split(",")
        try:
            value = [float(part) for part in value]
        except ValueError:
            raise vol.Invalid("expected two numbers like [2.0, 4.0]") from None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise vol.Invalid(f"expected two numbers like [2.0, 4.0], found {_type_name(value)}")
    return _float(value[0]), _float(value[1])


def _resolution(value: Any) -> tuple[int, int]:
    return parse_resolution(value)


def _two_floats(value: Any) -> tuple[float, float]:
    return parse_two_floats(value)


DATASET_KEYS: dict[str, Callable[[Any], Any]] = {
    "batch_size": _int, "resolution": _resolution, "enable_bucket": _bool, "min_bucket_reso": _int,
    "max_bucket_reso": _int, "bucket_reso_steps": _int, "bucket_no_upscale": _bool, "validation_split": _float,
    "validation_seed": _int, "network_multiplier": _float, "resize_interpolation": _str,
}
ASCENDABLE_KEYS: dict[str, Callable[[Any], Any]] = {
    "num_repeats": _int, "shuffle_caption": _bool, "caption_separator": _str, "keep_tokens": _int,
    "keep_tokens_separator": _str, "secondary_separator": _str, "enable_wildcard": _bool, "caption_prefix": _str,
    "caption_suffix": _str, "color_aug": _bool, "flip_aug": _bool, "face_crop_aug_range": _two_floats,
    "random_crop": _bool, "token_warmup_min": _int, "token_warmup_step": _float, "custom_attributes": _table,
    "resize_interpolation": _str, "caption_dropout_rate": _float, "caption_dropout_every_n_epochs": _int,
    "caption_tag_dropout_rate": _float, "caption_extension": _str, "class_tokens": _str, "cache_info": _bool,
}
SUBSET_ONLY_KEYS: dict[str, Callable[[Any], Any]] = {
    "image_dir": _str, "is_reg": _bool, "metadata_file": _str, "alpha_mask": _bool, "conditioning_data_dir": _str,
}
DREAMBOOTH_ONLY = ("caption_extension", "class_tokens", "cache_info", "is_reg")
INTERPOLATIONS = ("lanczos", "nearest", "bilinear", "linear", "bicubic", "cubic", "area", "box")

GENERAL_SCHEMA = {**DATASET_KEYS, **ASCENDABLE_KEYS}
SUBSET_SCHEMA = {**ASCENDABLE_KEYS, **SUBSET_ONLY_KEYS}
DATASET_SCHEMA = {**DATASET_KEYS, **ASCENDABLE_KEYS, "subsets": [dict]}
LEVELS = {"general": "[general]", "dataset": "[[datasets]]", "subset": "[[datasets.subsets]]"}


def _schema() -> vol.Schema:
    subset = vol.Schema(SUBSET_SCHEMA)
    dataset = vol.Schema({**DATASET_KEYS, **ASCENDABLE_KEYS, "subsets": [subset]})
    return vol.Schema({"general": vol.Schema(GENERAL_SCHEMA), "datasets": [dataset]})


def table_name(path: list[Any]) -> str:
    """['datasets', 0, 'subsets', 1] -> 'datasets[0].subsets[1]'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "top level"


def _allowed(path: list[Any]) -> tuple[str, dict[str, Any]]:
    depth = len([p for p in path if isinstance(p, int)])
    if not path:
        return "top level", {"general": 0, "datasets": 0}
    if path[0] == "general":
        return "general", GENERAL_SCHEMA
    return ("dataset", DATASET_SCHEMA) if depth == 1 else ("subset", SUBSET_SCHEMA)


def _unknown_key_message(source: str, table_path: list[Any], key: str) -> str:
    level, allowed = _allowed(table_path)
    where = f"{source}: {table_name(table_path)}"
    levels = [name for name, keys in (("general", GENERAL_SCHEMA), ("dataset", DATASET_SCHEMA),
                                      ("subset", SUBSET_SCHEMA)) if key in keys]
    if levels:
        return (f"{where}: key '{key}' is not allowed here; it belongs in "
                + " or ".join(LEVELS[name] for name in levels) + ". Move it there.")
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else f" Valid keys here: {', '.join(sorted(allowed))}."
    return f"{where}: unknown key '{key}'.{hint}"


def _message(source: str, error: vol.Invalid) -> str:
    path = list(error.path)
    if error.error_message == "extra keys not allowed":
        return _unknown_key_message(source, path[:-1], str(path[-1]))
    key = path[-1] if path and isinstance(path[-1], str) else None
    table = table_name(path[:-1] if key else path)
    if key in ("subsets", "datasets") or key is None:
        return f"{source}: {table_name(path)}: {error.error_message}; write [[datasets]] / [[datasets.subsets]] tables."
    return f"{source}: {table}: key '{key}': {error.error_message}."


def _check_kinds(config: dict[str, Any], source: str) -> None:
    """One dataset holds DreamBooth (image_dir) or fine-tuning (metadata_file) subsets, never both."""
    for i, dataset in enumerate(config.get("datasets", [])):
        subsets = dataset.get("subsets", [])
        kinds = {"finetune" if "metadata_file" in s else "dreambooth" for s in subsets}
        if len(kinds) > 1:
            raise ConfigError(f"{source}: datasets[{i}]: DreamBooth subset and fine tuning subset cannot be mixed "
                              "in the same dataset (subsets with image_dir only vs. subsets with metadata_file). "
                              "Please split them into separate [[datasets]].")
        for j, subset in enumerate(subsets):
            where = f"{source}: datasets[{i}].subsets[{j}]"
            if "metadata_file" in subset:
                for key in DREAMBOOTH_ONLY:
                    for table, label in ((subset, f"datasets[{i}].subsets[{j}]"), (dataset, f"datasets[{i}]")):
                        if key in table:
                            raise ConfigError(f"{source}: {label}: key '{key}' is for DreamBooth subsets "
                                              f"(image_dir + caption files), but datasets[{i}] is a fine-tuning "
                                              "dataset (metadata_file). Remove it.")
            elif "image_dir" not in subset:
                raise ConfigError(f"{where}: required key 'image_dir' not provided (a DreamBooth subset needs "
                                  "image_dir; a fine-tuning subset needs metadata_file).")
        if not subsets:
            raise ConfigError(f"{source}: datasets[{i}] has no [[datasets.subsets]]; add one with image_dir.")


def _check_values(config: dict[str, Any], source: str) -> None:
    tables = [("general", config.get("general", {}))]
    for i, dataset in enumerate(config.get("datasets", [])):
        tables.append((f"datasets[{i}]", dataset))
        tables += [(f"datasets[{i}].subsets[{j}]", s) for j, s in enumerate(dataset.get("subsets", []))]
    for name, table in tables:
        value = table.get("resize_interpolation")
        if value is not None and value.lower() not in INTERPOLATIONS:
            raise ConfigError(f'{source}: {name}: key \'resize_interpolation\': "{value}" is not a valid '
                              f"interpolation; use one of {', '.join(INTERPOLATIONS)}.")
        for key in ("caption_dropout_rate", "caption_tag_dropout_rate"):
            if key in table and not 0.0 <= table[key] <= 1.0:
                raise ConfigError(f"{source}: {name}: key '{key}' must be between 0.0 and 1.0, found {table[key]}.")
        for key in ("batch_size", "bucket_reso_steps", "min_bucket_reso", "max_bucket_reso"):
            if key in table and table[key] <= 0:
                raise ConfigError(f"{source}: {name}: key '{key}' must be a positive integer, found {table[key]}.")


def validate_config(config: Any, source: str = "dataset config") -> dict[str, Any]:
    """Check a parsed dataset config; return it with values normalised (resolution as (w, h), ...)."""
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: expected a table with [general] and [[datasets]], found {_type_name(config)}.")
    try:
        checked = _schema()(config)
    except vol.MultipleInvalid as error:
        raise ConfigError("\n".join(_message(source, e) for e in error.errors)) from None
    _check_kinds(checked, source)
    _check_values(checked, source)
    return checked


def load_dataset_config(path: str) -> dict[str, Any]:
    """Read a `.toml` or `.json` dataset config and validate it."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--dataset_config: file not found: {path}" +
                          (" (it is a folder)" if file.is_dir() else ". Check the path (relative to the current "
                                                                     "folder)."))
    try:
        if file.suffix.lower() == ".toml":
            config = load_toml(file, "--dataset_config")
        elif file.suffix.lower() == ".json":
            config = json.loads(file.read_text(encoding="utf-8-sig"))
        else:
            raise ConfigError(f"--dataset_config: not supported config file format: {path} (use .toml or .json).")
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON: {error}") from None
    if isinstance(config, dict) and is_train_args(config):
        raise ConfigError(f"--dataset_config {path}: this is a train arguments file (it sets options such as "
                          f"output_dir and network_module); pass it as --config_file {path}, and the dataset "
                          f"config ([[datasets]]) as --dataset_config.")
    return validate_config(config, str(path))
