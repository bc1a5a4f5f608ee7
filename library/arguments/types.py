"""argparse `type=` functions shared by several groups. They also accept non-strings, because TOML values
(already int/float) are run through the same functions by `library.config_file`."""

from __future__ import annotations

import argparse
from typing import Any

NO_EFFECT = "(no effect for Anima)"


def step_count_or_ratio(value: Any) -> int | float:
    """An int step count, or a float fraction (< 1) of the training steps; `5%` means 0.05 (kohya)."""
    if isinstance(value, bool):
        raise argparse.ArgumentTypeError(f"expected a step count or a fraction, got {value!r}")
    if isinstance(value, int | float):
        return value
    text = str(value).strip()
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100
        return int(text) if text.lstrip("+-").isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a step count, a fraction like 0.05 or a percentage like 5%, got {value!r}"
        ) from None


def int_or_float(value: Any) -> int | float:
    """An int when written as one, else a float (F's `--lr_scheduler_num_cycles`)."""
    if isinstance(value, bool):
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        return value
    text = str(value).strip()
    try:
        return int(text) if text.lstrip("+-").isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
