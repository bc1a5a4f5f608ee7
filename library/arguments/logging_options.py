"""Console logging options (kohya `add_logging_arguments`)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("console logging")
    group.add_argument(
        "--console_log_level",
        type=str,
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="Console log level (default INFO).",
    )
    group.add_argument(
        "--console_log_file", type=str, default=None, help="Write the console log to this file instead of stderr."
    )
    group.add_argument(
        "--console_log_simple", action="store_true", help="Plain log lines without colours or rich formatting."
    )
