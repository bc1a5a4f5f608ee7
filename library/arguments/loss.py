"""Loss options: --loss_type and Huber (names from the loss registry), and kohya's SD loss/noise tweaks,
which are accepted but have no effect on a flow-matching model."""

from __future__ import annotations

import argparse

from library.registries.losses import HUBER_SCHEDULES, LOSSES

from .types import NO_EFFECT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("loss")
    g.add_argument(
        "--loss_type", type=LOSSES.argparse_type, default="l2", choices=LOSSES.names(), help="Loss function."
    )
    g.add_argument(
        "--huber_schedule",
        type=HUBER_SCHEDULES.argparse_type,
        default="snr",
        choices=HUBER_SCHEDULES.names(),
        help="Huber threshold over noise levels (snr: from the flow-matching noise-to-signal ratio).",
    )
    g.add_argument(
        "--huber_c", type=float, default=0.1, help="Huber threshold (or its value at pure noise for a schedule)."
    )
    g.add_argument(
        "--huber_scale", type=float, default=1.0, help="Multiplier of the Huber threshold (constant, exponential)."
    )
    g.add_argument(
        "--nonfinite_loss",
        default="stop",
        choices=["stop", "skip"],
        help="A NaN or inf loss: stop (exit code 3, before it reaches the weights; the message names the step and "
        "the batch's images) or skip that step (no weight update; 3 skipped steps in a row stop the run).",
    )
    g.add_argument("--prior_loss_weight", type=float, default=1.0, help="Loss weight of regularisation images.")
    g.add_argument("--ip_noise_gamma", type=float, default=None, help="Input-perturbation noise strength.")
    g.add_argument(
        "--ip_noise_gamma_random_strength", action="store_true", help="Draw the perturbation strength in [0, gamma]."
    )
    g.add_argument("--noise_offset", type=float, default=None, help=f"SD noise offset {NO_EFFECT}.")
    g.add_argument(
        "--noise_offset_random_strength", action="store_true", help=f"Random noise offset strength {NO_EFFECT}."
    )
    g.add_argument("--multires_noise_iterations", type=int, default=None, help=f"Multi-resolution noise {NO_EFFECT}.")
    g.add_argument(
        "--multires_noise_discount", type=float, default=0.3, help=f"Multi-resolution noise discount {NO_EFFECT}."
    )
    g.add_argument("--adaptive_noise_scale", type=float, default=None, help=f"Adaptive noise offset {NO_EFFECT}.")
    g.add_argument(
        "--zero_terminal_snr", action="store_true", help=f"Rescale SD betas to zero terminal SNR {NO_EFFECT}."
    )
    g.add_argument(
        "--min_timestep", type=int, default=None, help=f"Lowest SD timestep {NO_EFFECT} (recorded in metadata)."
    )
    g.add_argument(
        "--max_timestep", type=int, default=None, help=f"Highest SD timestep {NO_EFFECT} (recorded in metadata)."
    )
    g.add_argument("--min_snr_gamma", type=float, default=None, help=f"Min-SNR weighting {NO_EFFECT}.")
    g.add_argument(
        "--scale_v_pred_loss_like_noise_pred", action="store_true", help=f"v-prediction loss scaling {NO_EFFECT}."
    )
    g.add_argument("--v_pred_like_loss", type=float, default=None, help=f"v-prediction-like loss {NO_EFFECT}.")
    g.add_argument("--debiased_estimation_loss", action="store_true", help=f"Debiased estimation loss {NO_EFFECT}.")
    g.add_argument(
        "--weighted_captions",
        action="store_true",
        help=f"(tag:1.3) weights in training captions {NO_EFFECT}: captions are literal text, as in ComfyUI.",
    )
