"""Options of pivotal tuning: a trigger word's T5 rows in `llm_adapter.embed` trained with the LoRA (docs/pivotal_tuning.md).

Anima-only (the rows live in the DiT's own adapter), so they sit in the Anima parser, not the generic one.
"""

from __future__ import annotations

import argparse

from library.errors import ConfigError

TRIGGER_FILE_FORMAT = "sd-scripts-anima trigger rows v1"  # metadata `format` of <name>.trigger.safetensors


def add_pivotal_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Anima pivotal tuning (a trained trigger word)")
    group.add_argument(
        "--pivotal_trigger", type=str, default=None,
        help="Train the llm_adapter embedding rows of this trigger word's T5 pieces together with the network. "
        "The word must occur in the captions; the rows are saved in the same file as a LoRA on "
        "llm_adapter.embed.weight (ComfyUI loads it), and as <file>.trigger.safetensors.")
    group.add_argument(
        "--pivotal_init_text", type=str, default=None,
        help="Start every trigger row at the mean T5 embedding of this text's pieces (e.g. '1girl' or a "
        "character's broad description). Default: the pieces' own rows (no change at step 0).")
    group.add_argument(
        "--pivotal_lr", type=float, default=None,
        help="Learning rate of the trigger rows (their own optimizer group, no weight decay). Default: the "
        "network's (--unet_lr, else --learning_rate).")
    group.add_argument(
        "--pivotal_train_steps", type=int, default=None,
        help="Train the trigger rows for the first N optimizer steps only, then freeze them while the network "
        "trains on. Default: every step.")


def check_pivotal_values(args: argparse.Namespace) -> None:
    """Start-up check: values that parse but cannot work, and options that need --pivotal_trigger."""
    trigger = args.pivotal_trigger
    if trigger is None:
        given = [f"--{name}" for name in ("pivotal_init_text", "pivotal_lr", "pivotal_train_steps")
                 if getattr(args, name) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} set without --pivotal_trigger: give the trigger word to train, "
                              "or drop them.")
        return
    if not trigger.strip() or trigger != trigger.strip() or "," in trigger:
        raise ConfigError(f"--pivotal_trigger {trigger!r}: give one caption tag without surrounding spaces or "
                          "commas, e.g. 'orvantis'.")
    if args.pivotal_init_text is not None and not args.pivotal_init_text.strip():
        raise ConfigError("--pivotal_init_text is empty: give the text whose mean embedding starts the rows, "
                          "or drop it to start from the trigger's own rows.")
    if args.pivotal_lr is not None and not args.pivotal_lr > 0:
        raise ConfigError(f"--pivotal_lr {args.pivotal_lr}: give a positive learning rate.")
    if args.pivotal_train_steps is not None and args.pivotal_train_steps < 1:
        raise ConfigError(f"--pivotal_train_steps {args.pivotal_train_steps}: give 1 or more steps, or drop it to "
                          "train the rows every step.")
