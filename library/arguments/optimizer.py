"""Optimizer and LR scheduler options (kohya `add_optimizer_arguments`); names come from the registries."""

from __future__ import annotations

import argparse

from library.registries.optimizers import OPTIMIZERS
from library.registries.schedulers import SCHEDULERS

from .types import int_or_float, step_count_or_ratio


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("optimizer and LR scheduler")
    g.add_argument(
        "--optimizer_type",
        type=str,
        default="",
        help=f"Optimizer (case-insensitive): {', '.join(OPTIMIZERS.names())}; or a torch.optim class name "
        f"or a dotted package.module.Class. Default AdamW.",
    )
    g.add_argument("--use_8bit_adam", action="store_true", help="Legacy shortcut for --optimizer_type AdamW8bit.")
    g.add_argument("--use_lion_optimizer", action="store_true", help="Legacy shortcut for --optimizer_type Lion.")
    g.add_argument("--learning_rate", type=float, default=2.0e-6, help="Base learning rate.")
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping norm (0 = no clipping).")
    g.add_argument(
        "--optimizer_args",
        type=str,
        default=None,
        nargs="*",
        help='Optimizer keyword arguments as key=value Python literals, e.g. weight_decay=0.01 "betas=(0.9,0.99)".',
    )
    g.add_argument(
        "--lr_scheduler",
        type=SCHEDULERS.argparse_type,
        default="constant",
        choices=SCHEDULERS.names(),
        help="LR schedule: every schedule of diffusers' and transformers' get_scheduler (reduce_lr_on_plateau and "
        "greedy are refused with the reason: they need a metric at every step).",
    )
    g.add_argument(
        "--lr_scheduler_type",
        type=str,
        default="",
        help="A custom scheduler class (package.module.Class), built with --lr_scheduler_args.",
    )
    g.add_argument(
        "--lr_scheduler_args",
        type=str,
        default=None,
        nargs="*",
        help="Scheduler keyword arguments as key=value Python literals.",
    )
    g.add_argument(
        "--lr_warmup_steps",
        type=step_count_or_ratio,
        default=0,
        help="Warmup steps: an integer count, or a fraction (< 1, or N%%) of the training steps.",
    )
    g.add_argument(
        "--lr_decay_steps",
        type=step_count_or_ratio,
        default=0,
        help="Decay steps for warmup_stable_decay: a count or a fraction (< 1, or N%%).",
    )
    g.add_argument(
        "--lr_scheduler_num_cycles",
        type=int_or_float,
        default=1,
        help="Cycles for cosine_with_restarts / cosine_with_min_lr.",
    )
    g.add_argument("--lr_scheduler_power", type=float, default=1, help="Power of the polynomial schedule.")
    g.add_argument(
        "--lr_scheduler_timescale", type=int, default=None, help="Timescale of inverse_sqrt (default: warmup steps)."
    )
    g.add_argument(
        "--lr_scheduler_min_lr_ratio",
        type=float,
        default=None,
        help="Final LR as a fraction of the base LR (cosine_with_min_lr, cosine_warmup_with_min_lr, "
        "warmup_stable_decay); min_lr or min_lr_rate in --lr_scheduler_args take its place.",
    )
    g.add_argument(
        "--fused_backward_pass",
        action="store_true",
        help="kohya's Adafactor memory saver: each parameter steps inside backward as soon as its gradient is "
        "ready, and the gradient is freed (--max_grad_norm clips each parameter's gradient alone). Needs "
        "--optimizer_type AdaFactor, one process, no gradient accumulation, not fp16.",
    )
