"""The state of one root-style -> kohya conversion (root-config.md), shared by the per-section mappers.

Every key of the old file is read through a `Section`, so a key no mapper asked for is reported as not
converted instead of vanishing: the user sees the whole file accounted for. Absent keys that changed the
old trainer's behaviour are filled from its defaults (root-config.md §7) and listed, because kohya's
defaults differ (rank 32 vs 4, lr 5e-5 vs 2e-6, ...) and the converted run should train like the old one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from library.errors import ConfigError


def present(value: Any) -> bool:
    """F's rule: None and blank strings are absent; 0 and false are present."""
    return value is not None and not (isinstance(value, str) and not value.strip())


@dataclass
class Conversion:
    """What the mappers produce: train args, the dataset tables, and the account of what did not carry over."""

    source: Path
    train_args: dict[str, Any] = field(default_factory=dict)
    general: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    subsets: list[dict[str, Any]] = field(default_factory=list)
    network_args: list[str] = field(default_factory=list)
    optimizer_args: list[str] = field(default_factory=list)
    unmapped: list[tuple[str, str]] = field(default_factory=list)
    defaulted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def base_dir(self) -> Path:
        return self.source.parent

    def path(self, value: Any, key: str) -> str:
        """Relative paths were relative to where the old trainer ran, normally beside its config: make them
        absolute against the input file's folder, so the converted files work from any folder."""
        if not isinstance(value, str):
            raise ConfigError(f"{self.source}: {key} = {value!r}: expected a path in quotes.")
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (self.base_dir / path).resolve())

    def skip(self, key: str, why: str) -> None:
        self.unmapped.append((key, why))

    def default(self, target: str, value: Any, key: str) -> Any:
        """Note that `target` came from the old trainer's default for the absent `key`."""
        self.defaulted.append(f"{target} = {value!r} ({key})")
        return value

    def dataset_config(self) -> dict[str, Any]:
        dataset = {**self.dataset, "subsets": self.subsets}
        return {"general": self.general, "datasets": [dataset]} if self.general else {"datasets": [dataset]}


class Section:
    """One table of the old file; remembers which keys a mapper read."""

    def __init__(self, conv: Conversion, name: str, table: Any) -> None:
        if table is not None and not isinstance(table, dict):
            raise ConfigError(f"{conv.source}: [{name}] must be a table, found {table!r}.")
        self.conv, self.name, self.table, self.used = conv, name, table or {}, set[str]()

    def key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def get(self, key: str, default: Any = None) -> Any:
        """The value if present (see `present`), else `default`."""
        self.used.add(key)
        value = self.table.get(key)
        return value if present(value) else default

    def has(self, key: str) -> bool:
        self.used.add(key)
        return present(self.table.get(key))

    def value(self, key: str, kind: type, target: str = "", r_default: Any = None) -> Any:
        """The value cast to `kind`; when absent, the old trainer's default (recorded against `target`) or None."""
        value = self.get(key)
        if value is None:
            return None if r_default is None else self.conv.default(target, r_default, self.key(key))
        return cast(value, kind, self.conv.source, self.key(key))

    def finish(self) -> None:
        """Report the keys no mapper read."""
        for key in self.table:
            if key not in self.used:
                self.conv.skip(self.key(key), "not a key of the root-style format; nothing reads it")


def cast(value: Any, kind: type, source: Path, key: str) -> Any:
    """bool/int/float/str with the file and key named on failure; no silent truncation of 1.5 to 1."""
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool)
        or isinstance(value, float) and value.is_integer(),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[kind]
    if not ok:
        raise ConfigError(f"{source}: {key} = {value!r}: expected {kind.__name__}. Fix the value and convert again.")
    return kind(value)
