"""DiT training options shared by kohya's Anima/FLUX/SD3 scripts (`add_dit_training_arguments`): text-encoder
caching, timestep sampling and loss weighting. Names of samplers and weightings come from the registries; the
defaults are kohya's generic (FLUX) ones, and a model's argument function may replace them."""

from __future__ import annotations

import argparse

from library.registries.timesteps import TIMESTEP_SAMPLERS
from library.registries.weightings import WEIGHTINGS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("DiT caching, timesteps and loss weighting")
    g.add_argument(
        "--cache_text_encoder_outputs", action="store_true", help="Encode captions once and reuse the outputs."
    )
    g.add_argument(
        "--cache_text_encoder_outputs_to_disk",
        action="store_true",
        help="Cache text-encoder outputs in files next to the images (implies --cache_text_encoder_outputs).",
    )
    g.add_argument(
        "--text_encoder_batch_size",
        type=int,
        default=None,
        help="Batch size for text-encoder caching (default: dataset batch size).",
    )
    g.add_argument(
        "--disable_mmap_load_safetensors",
        action="store_true",
        help="Read safetensors fully instead of memory-mapping them.",
    )
    g.add_argument(
        "--timestep_sampling",
        type=TIMESTEP_SAMPLERS.argparse_type,
        default="sigma",
        choices=TIMESTEP_SAMPLERS.names(),
        help="How training noise levels are drawn: sigmoid = logit-normal sigmoid(s·N(0,1)); uniform; shift = sigmoid "
        "then flow shift; flux_shift = resolution-dependent shift; sigma = scheduler index from "
        "--weighting_scheme; logit_normal = sigmoid(mean + std·N(0,1)); uniform_shift = uniform then flow shift.",
    )
    g.add_argument(
        "--sigmoid_scale",
        type=float,
        default=1.0,
        help="Scale s of the logit-normal samplers (sigmoid, shift, flux_shift).",
    )
    g.add_argument(
        "--discrete_flow_shift", type=float, default=3.0, help="Flow shift for --timestep_sampling shift, uniform_shift and sigma."
    )
    g.add_argument(
        "--weighting_scheme",
        type=WEIGHTINGS.argparse_type,
        default="uniform",
        choices=WEIGHTINGS.names(),
        help="Loss weighting over noise levels (logit_normal and mode only change sampling with --timestep_sampling sigma).",
    )
    g.add_argument(
        "--logit_mean",
        type=float,
        default=0.0,
        help="Mean of the logit-normal density (weighting_scheme / logit_normal sampling).",
    )
    g.add_argument("--logit_std", type=float, default=1.0, help="Std of the logit-normal density.")
    g.add_argument("--mode_scale", type=float, default=1.29, help="Scale of the 'mode' density.")
