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
    _monitor_options(g)
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


def _monitor_options(g: argparse._ArgumentGroup) -> None:
    """The seed project's step monitor (library/seed_alerts.py), under its names."""
    g.add_argument("--anima_monitor_memory", action=argparse.BooleanOptionalAction, default=None,
                   help="Log CUDA memory each step (gpu/mem_allocated_mb, gpu/mem_reserved_mb, "
                   "gpu/mem_peak_allocated_mb, gpu/mem_usage_ratio = reserved / total) to the trackers; on by "
                   "default once a memory ratio or the raise policy is set. Nothing to log without CUDA.")
    g.add_argument("--anima_monitor_memory_warn_ratio", type=float, default=None,
                   help="Warn (once) when reserved / total GPU memory reaches this ratio (the seed's 0.95 when only "
                   "--anima_monitor_memory is set); alert/memory_near_limit is logged each step.")
    g.add_argument("--anima_monitor_loss_spike_ratio", type=float, default=None,
                   help="Warn when a step's loss exceeds this many times the previous finite step loss; "
                   "alert/loss_spike is logged each step.")
    g.add_argument("--anima_monitor_alert_policy", choices=["warn", "raise"], default=None,
                   help="raise: memory at the warn ratio stops the run after that step with a resumable state and "
                   "the command that continues it (exit code 4). A NaN/inf loss is --nonfinite_loss's (stop by "
                   "default, before it reaches the weights) under either policy.")
