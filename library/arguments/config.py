"""Configuration-file options: the train-args TOML (§3) and the dataset TOML (§2.10)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("configuration files")
    g.add_argument(
        "--config_file",
        type=str,
        default=None,
        help="Train-arguments TOML (flat or in tables; .toml is appended if missing). Command line > file > defaults.",
    )
    g.add_argument(
        "--output_config",
        action="store_true",
        help="Write the arguments that differ from the defaults to --config_file (which must not exist) and exit.",
    )
    g.add_argument(
        "--dataset_config",
        type=Path,
        default=None,
        help="Dataset TOML/JSON (see docs); relative to the current folder.",
    )
