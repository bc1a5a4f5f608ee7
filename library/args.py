"""The generic argument parser: kohya's option groups, the `--config_file` merge and `--output_config`.

Model trainers call `build_parser`, add their own options (e.g. `library.anima.args.add_anima_arguments`),
then `parse_args`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from library.arguments import (
    config,
    dataset,
    deepspeed,
    dit,
    logging_options,
    loss,
    memory,
    metadata,
    model,
    monitor,
    network,
    optimizer,
    saving,
    tracking,
    training,
)
from library.arguments.parser import OptionParser
from library.config_file import config_path, load_config_values, write_output_config
from library.errors import ConfigError
from library.option_support import annotate_help

GROUPS = (
    logging_options,
    model,
    metadata,
    dataset,
    training,
    saving,
    tracking,
    monitor,
    optimizer,
    network,
    loss,
    config,
    dit,
    memory,
    deepspeed,
)


def build_parser(description: str) -> argparse.ArgumentParser:
    """All generic groups. Abbreviations are off so that an old or mistyped flag is never taken for a longer one;
    a bad option or value is a one-line `ConfigError` (library/arguments/parser.py)."""
    parser = OptionParser(description=description)
    for group in GROUPS:
        group.add_arguments(parser)
    annotate_help(parser)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line, then `--config_file` underneath it (CLI > TOML > defaults); `--output_config` writes the
    file and exits 0. Raises `ConfigError` for a missing file, unknown key or bad value."""
    args = parser.parse_args(argv)
    if args.output_config:
        if not args.config_file:
            raise ConfigError("--output_config needs --config_file, the name of the TOML file to write.")
        path = config_path(args.config_file)
        write_output_config(parser, args, path)
        print(f"Wrote {path}")
        raise SystemExit(0)
    if args.config_file:
        seeded = argparse.Namespace(**load_config_values(parser, config_path(args.config_file)))
        args = parser.parse_args(argv, namespace=seeded)
    if args.deepspeed:
        raise ConfigError("--deepspeed: DeepSpeed is not supported by this trainer; remove the option.")
    return args


_CONSOLE_HANDLER = "sd-scripts-anima-console"


def setup_console_logging(args: argparse.Namespace) -> None:
    """kohya's --console_log_level / --console_log_file / --console_log_simple. Only our own handler is replaced,
    so handlers that an embedding program (or pytest) attached keep working."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == _CONSOLE_HANDLER]:
        root.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(args.console_log_file, encoding="utf-8") if args.console_log_file \
        else logging.StreamHandler()
    handler.set_name(_CONSOLE_HANDLER)
    handler.setFormatter(logging.Formatter(
        "%(message)s" if args.console_log_simple else "%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(getattr(logging, (args.console_log_level or "INFO").upper(), logging.INFO))
