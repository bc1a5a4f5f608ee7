"""Model file options shared with kohya's SD scripts (`add_sd_models_arguments`, `--vae`)."""

from __future__ import annotations

import argparse

from .types import NO_EFFECT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--pretrained_model_name_or_path",
        type=str,
        default=None,
        help="The base model file (for Anima: the DiT .safetensors; a ComfyUI `net.` prefix is fine).",
    )
    group.add_argument(
        "--vae",
        type=str,
        default=None,
        help="The VAE file (for Anima: the Qwen-Image / Wan 2.1 VAE .safetensors or .pth).",
    )
    group.add_argument("--v2", action="store_true", help=f"Stable Diffusion 2.x model {NO_EFFECT}.")
    group.add_argument("--v_parameterization", action="store_true", help=f"v-prediction SD 2.x model {NO_EFFECT}.")
    group.add_argument(
        "--tokenizer_cache_dir", type=str, default=None, help=f"Cache folder for SD tokenizers {NO_EFFECT}."
    )
