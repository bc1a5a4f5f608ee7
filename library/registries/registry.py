"""A name -> entry table with case-insensitive names and aliases.

Every user-facing family (optimizers, schedulers, samplers, losses, weightings) is looked up through one of
these, so a typo always fails the same way: a `ConfigError` naming the option and listing the valid names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from library.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries keyed by a canonical name; lookups ignore case and accept aliases."""

    def __init__(self, option: str) -> None:
        self.option = option  # the command-line option the names are given with, for messages
        self._entries: dict[str, T] = {}
        self._lookup: dict[str, str] = {}

    def register(self, name: str, entry: T, aliases: Iterable[str] = ()) -> T:
        for spelling in (name, *aliases):
            key = spelling.lower()
            if key in self._lookup:
                raise ValueError(f"{self.option}: {spelling!r} registered twice")
            self._lookup[key] = name
        self._entries[name] = entry
        return entry

    def names(self) -> list[str]:
        """Canonical names, in registration order (aliases are not listed)."""
        return list(self._entries)

    def canonical(self, name: str) -> str | None:
        """The canonical spelling of `name` (or of the alias), or None when unknown."""
        return self._lookup.get(str(name).lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup

    def get(self, name: str) -> T:
        canonical = self.canonical(name)
        if canonical is None:
            raise ConfigError(f"{self.option}: unknown value {name!r}. Valid values: {', '.join(self.names())}.")
        return self._entries[canonical]

    def argparse_type(self, value: str) -> str:
        """For argparse `type=`: maps any spelling to the canonical name; unknown names pass through so that
        argparse's own `choices` check reports them with the list of valid names."""
        return self.canonical(value) or value
