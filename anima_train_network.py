"""Train a LoRA / LoKr for Anima: `accelerate launch anima_train_network.py --config_file ... --dataset_config ...`.

This file is the entry point. It parses the options and checks them, the dataset config and the model files'
headers before torch is imported, so `--help` and a mistake answer in well under a second; then it imports the
trainer (`library.anima.network_trainer.AnimaNetworkTrainer`, which holds Anima's hooks for the generic
`library.trainer.NetworkTrainer`) and trains. Its names stay importable from here: `from anima_train_network import
AnimaNetworkTrainer`.
"""

from __future__ import annotations

import os
import sys
from argparse import Namespace
from typing import Any

from library.anima.seed_options import apply_seed_options
from library.anima.startup import anima_parser, check_model_files, check_model_paths
from library.args import parse_args, setup_console_logging
from library.errors import UserError
from library.launcher_death import follow_launcher
from library.signals import exit_worker
from library.startup_checks import check_before_torch, warnings_muted


def __getattr__(name: str) -> Any:
    """`AnimaNetworkTrainer` and the trainer module's other names, imported (with torch) on first use. Dunder names
    are not among them: the import system asks for `__path__` on every `from anima_train_network import ...`."""
    if name.startswith("__"):
        raise AttributeError(name)
    from library.anima import network_trainer

    return getattr(network_trainer, name)


def check_before_import(args: Namespace) -> None:
    """Every check that needs no torch; the trainer repeats them (and prints their warnings) in `validate`."""
    with warnings_muted():
        apply_seed_options(args)
        check_before_torch(args)
        check_model_paths(args)
        check_model_files(args)


def main(argv: list[str] | None = None) -> None:
    follow_launcher()
    try:
        args = parse_args(anima_parser(), argv)
        setup_console_logging(args)
        check_before_import(args)
        from library.anima.network_trainer import AnimaNetworkTrainer

        AnimaNetworkTrainer().train(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code  # 2, or 3 for a NaN / inf loss (docs/troubleshooting.md)
    else:
        code = 0
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        exit_worker(code)  # never through interpreter shutdown (library/signals.py)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
