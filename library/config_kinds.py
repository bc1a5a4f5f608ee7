"""Which of kohya's two TOML files a file is, told by its content, and TOML's trap for Windows paths.

A dataset.toml passed as `--config_file` (or a train-arguments TOML as `--dataset_config`) would otherwise fail on
its first unknown key (or list them all), never saying that the file is whole but in the wrong slot. A Windows path
in a basic (double-quoted) string is read with `\\` as an escape: `"C:\\Users"` fails with "Reserved escape
sequence", and `"D:\\new"` silently holds a newline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import toml

from library.errors import ConfigError

# keys nearly every train-arguments file has and no dataset config can (library/dataset/schema.py)
TRAIN_ARGS_KEYS = frozenset({"pretrained_model_name_or_path", "output_dir", "output_name", "network_module",
                             "network_dim", "learning_rate", "max_train_steps", "max_train_epochs", "optimizer_type",
                             "mixed_precision", "dataset_config", "save_every_n_steps", "save_every_n_epochs"})
WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")
TOML_ESCAPE_TRAP = re.compile(r"\"[A-Za-z]:\\(?!\\)")
QUOTE_FIX = "write the path in single quotes ('C:\\Users\\me\\data') or with / (\"C:/Users/me/data\")"


def is_dataset_config(data: dict[str, Any]) -> bool:
    """[[datasets]] tables, or a [general] table without a single train-arguments key."""
    return isinstance(data.get("datasets"), list) or (isinstance(data.get("general"), dict)
                                                      and not TRAIN_ARGS_KEYS & set(data))


def is_train_args(data: dict[str, Any]) -> bool:
    """No [[datasets]], and train-arguments keys at the top or one table down (kohya allows tables there)."""
    if "datasets" in data:
        return False
    keys = set(data) | {key for value in data.values() if isinstance(value, dict) for key in value}
    return len(TRAIN_ARGS_KEYS & keys) >= 2


def load_toml(path: Path, option: str) -> dict[str, Any]:
    """`path` parsed, with Windows paths in double quotes refused with the fix (whether TOML failed on them or
    silently read `\\n` / `\\t` in them)."""
    text = path.read_text(encoding="utf-8-sig")  # Notepad writes a BOM
    try:
        data = toml.loads(text)
    except toml.TomlDecodeError as exc:
        if "escape" in str(exc).lower() and (trap := TOML_ESCAPE_TRAP.search(text)):
            line = text.count("\n", 0, trap.start()) + 1
            raise ConfigError(f"{option} {path}: line {line}: a Windows path in double quotes, where TOML reads \\ "
                              f"as an escape (\\U, \\n, ...); {QUOTE_FIX}.") from None
        raise ConfigError(f"{option} {path}: not valid TOML: {exc}") from None
    for key, value in _strings(data):
        if WINDOWS_DRIVE.match(value) and any(c in value for c in "\n\t\r\b\f"):
            raise ConfigError(f"{option} {path}: {key} = {value!r}: a Windows path in double quotes, where TOML read "
                              f"\\n, \\t, ... as control characters; {QUOTE_FIX}.")
    return data


def _strings(data: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(data, str):
        yield key, data
    elif isinstance(data, dict):
        for name, value in data.items():
            yield from _strings(value, f"{key}.{name}" if key else name)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _strings(value, f"{key}[{index}]")
