"""Start-up checks of values and files that would otherwise pass and fail later, after the models have loaded.

Each check names the option and the fix: counts that must be positive (a zero rank, accumulation or step count
crashes mid-run or, worse, writes an untrained LoRA).
"""

from __future__ import annotations

from argparse import Namespace

from library.errors import ConfigError


def check_inputs(args: Namespace) -> None:
    """Every check of this module, in the order the options are read."""
    check_counts(args)


def check_counts(args: Namespace) -> None:
    """Ranks, accumulation and the run's length: zero or negative values are refused with the option's name."""
    positive = [("--network_dim", args.network_dim, "the LoRA / LoKr rank, e.g. 16 (or leave it unset)"),
                ("--gradient_accumulation_steps", args.gradient_accumulation_steps, "1 for no accumulation"),
                ("--max_train_epochs", args.max_train_epochs, "a number of epochs, or leave it unset")]
    if not args.max_train_epochs:  # --max_train_epochs replaces --max_train_steps (trainer._schedule)
        positive.append(("--max_train_steps", args.max_train_steps, "the number of optimizer steps, e.g. 1600"))
    for option, value, fix in positive:
        if value is not None and value < 1:
            raise ConfigError(f"{option} {value}: must be 1 or more; use {fix}.")
    if args.network_alpha is not None and args.network_alpha < 0:
        raise ConfigError(f"--network_alpha {args.network_alpha}: must not be negative (it would flip the sign of "
                          f"the update). Use a value up to --network_dim (e.g. 1 or the rank), or 0 for alpha = rank.")
