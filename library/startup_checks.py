"""The checks that need no torch, run by the entry point between parsing and importing the trainer, so that a bad
option, TOML value, `--resume` folder or dataset.toml answers in well under a second (issue 24 point 2).

`NetworkTrainer.validate` and the dataset build run the same checks again once torch is loaded, and print their
warnings then; here warnings are muted, so each is printed once.
"""

from __future__ import annotations

import contextlib
import logging
import os
from argparse import Namespace
from collections.abc import Iterator

from library import state as state_lib
from library import tracking
from library.dataset.blueprint import load_blueprint
from library.input_checks import check_inputs
from library.option_support import check_option_support
from library.registries import validate_registries


@contextlib.contextmanager
def warnings_muted() -> Iterator[None]:
    """Errors still raise; warnings wait for the second pass (see the module docstring)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def check_before_torch(args: Namespace) -> None:
    """Registry names and values, refused options, tracking, counts, the `--resume` folder and the dataset config."""
    validate_registries(args)
    check_option_support(args)
    tracking.validate_tracking(args)
    check_inputs(args)
    if args.resume:
        resume = state_lib.read_train_state(args.resume)
        state_lib.check_process_count(args.resume, resume, int(os.environ.get("WORLD_SIZE", "1")))
    load_blueprint(args)
