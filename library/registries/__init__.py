"""One registry per user-chosen family, and `validate_registries`, the start-up check of all of them.

`validate_registries` imports no model and no heavy optional package (bitsandbytes, transformers), so a bad
name or argument fails in well under a second, before anything is loaded.
"""

from __future__ import annotations

import argparse

from .losses import validate_loss
from .optimizers import validate_optimizer
from .schedulers import validate_scheduler
from .timesteps import validate_timesteps
from .weightings import validate_weighting

__all__ = ["validate_registries"]


def validate_registries(args: argparse.Namespace) -> None:
    """Every registry-backed name, argument and combination; raises `ConfigError` listing the valid choices."""
    validate_optimizer(args)
    validate_scheduler(args)
    validate_timesteps(args)
    validate_loss(args)
    validate_weighting(args)
