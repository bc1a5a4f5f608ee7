"""User-facing errors: each names the culprit (file, key or option) and says what to do.

`main()` catches `UserError` and prints it without a traceback, so a bad input reads as a sentence,
not as a crash.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input that the user can fix; the message says how."""

    exit_code = 2


class NonFiniteError(UserError):
    """Training diverged (a NaN or inf loss or weight): its own exit code, so a script can tell it from a bad option
    and knows the files already saved are the last good ones."""

    exit_code = 3


class ConfigError(UserError):
    """A bad option value, TOML key or dataset.toml entry."""


class ModelFileError(UserError):
    """A model file that is missing, of the wrong kind, or not loadable."""

    def __init__(self, path: str, expected: str, found: str, fix: str = "") -> None:
        self.path, self.expected, self.found = str(path), expected, found
        message = f"{path}: expected {expected}, but found {found}."
        if fix:
            message += f" {fix}"
        super().__init__(message)
