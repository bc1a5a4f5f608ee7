"""Give an existing option more spellings (decision 1: `--anima_transformer` = `--pretrained_model_name_or_path`).

argparse has no public way to add an option string to an action after it was created; this is the one place
that touches its internals, so that both spellings share one dest, one default and one help line.
"""

from __future__ import annotations

import argparse


def find_action(parser: argparse.ArgumentParser, option: str) -> argparse.Action:
    action = parser._option_string_actions.get(option)  # noqa: SLF001 - see module docstring
    if action is None:
        raise KeyError(f"no option {option} to alias")
    return action


def add_aliases(parser: argparse.ArgumentParser, option: str, *aliases: str) -> argparse.Action:
    """Make each of `aliases` another spelling of `option`; `--help` then lists them all."""
    action = find_action(parser, option)
    for alias in aliases:
        if alias in parser._option_string_actions:  # noqa: SLF001
            raise ValueError(f"{alias} already exists")
        action.option_strings.append(alias)
        parser._option_string_actions[alias] = action  # noqa: SLF001
    return action
