"""Logging to trackers and sample images (part of kohya `add_training_arguments`)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("logging and samples")
    g.add_argument("--logging_dir", type=str, default=None, help="Tracker log folder (logging is on when set).")
    g.add_argument(
        "--log_with", type=str, default=None, choices=["tensorboard", "wandb", "all"], help="Tracker(s) to log to."
    )
    g.add_argument(
        "--logging_every_n_steps", type=int, default=10,
        help="Read the step losses from the GPU every N steps, all at once: each step's loss still reaches the logs, "
        "the loss CSV and the progress bar, N steps later at most. A read makes the CPU wait for the GPU, so reading "
        "every step (1) slows small steps; the bar's step count moves every step either way.")
    g.add_argument("--log_prefix", type=str, default=None, help="Prefix of the run folder name.")
    g.add_argument("--log_tracker_name", type=str, default=None, help="Tracker/project name (default network_train).")
    g.add_argument("--wandb_run_name", type=str, default=None, help="wandb run name.")
    g.add_argument("--log_tracker_config", type=str, default=None, help="TOML file with tracker init kwargs.")
    g.add_argument("--wandb_api_key", type=str, default=None, help="wandb API key (never written by --output_config).")
    g.add_argument("--log_config", action="store_true", help="Send the (sanitised) arguments to the trackers.")
    g.add_argument("--sample_every_n_steps", type=int, default=None, help="Render sample images every N steps.")
    g.add_argument(
        "--sample_every_n_epochs", type=int, default=None, help="Render sample images every N epochs (overrides steps)."
    )
    g.add_argument("--sample_at_first", action="store_true", help="Render sample images before training.")
    g.add_argument("--sample_prompts", type=str, default=None, help="Sample prompt file (.txt, .toml or .json).")
    g.add_argument(
        "--sample_sampler",
        type=str,
        default=None,
        help="Sampler for sample images: er_sde (default, ComfyUI's choice for Anima), euler, euler_ancestral "
        "(euler_a), dpmpp_2m. A prompt's own --ss wins.",
    )
