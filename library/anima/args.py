"""Anima's command-line options on top of the generic parser (kohya-cli.md §2.12, decisions 1, 2 and 4).

kohya's names and the seed project's names are spellings of one option (`--help` shows both):
`--pretrained_model_name_or_path`/`--anima_transformer`, `--qwen3`/`--qwen`, `--t5_tokenizer_path`/`--t5_tokenizer_dir`.
"""

from __future__ import annotations

import argparse
from typing import Any

from library.anima.pivotal_args import add_pivotal_arguments
from library.anima.seed_options import add_seed_arguments
from library.arguments.aliases import add_aliases
from library.arguments.types import NO_EFFECT
from library.config_file import ROOT_STYLE_HINT
from library.errors import ConfigError
from library.option_support import annotate_help

# The model author's training defaults (decision 4): logit-normal, scale 1, no shift.
ANIMA_DEFAULTS = {"timestep_sampling": "sigmoid", "sigmoid_scale": 1.0, "discrete_flow_shift": 1.0}


class _OldConfigFlag(argparse.Action):
    """`--config FILE` was the root-style trainers' flag; say how to convert instead of a bare argparse error."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        raise ConfigError(
            f"--config is the old root-style Anima flag. Convert the file to kohya's train-args and dataset TOMLs with "
            f"`{ROOT_STYLE_HINT} {values}` and pass them as --config_file / --dataset_config."
        )


def _t5_options(group: argparse._ArgumentGroup, no_effect_lengths: str) -> None:
    group.add_argument(
        "--t5_tokenizer_path",
        "--t5_tokenizer_dir",
        type=str,
        default=None,
        help="T5 tokenizer folder (default: the bundled t5-v1_1 tokenizer; no download needed).",
    )
    group.add_argument(
        "--auto_download_t5_tokenizer",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Complete a T5 tokenizer folder that lacks files by downloading them (Hugging Face, then "
        "ModelScope). Off by default: without it a missing file is an error that names it.",
    )
    group.add_argument(
        "--t5_tokenizer_repo_id",
        type=str,
        default="google/t5-v1_1-base",
        help="Hugging Face repo (or URL) to download the T5 tokenizer from (all t5-v1_1 sizes share it).",
    )
    group.add_argument(
        "--t5_tokenizer_subfolder",
        type=str,
        default="tokenizer",
        help="Subfolder of that repo tried first (then the repo root).",
    )
    group.add_argument(
        "--t5_tokenizer_modelscope_fallback",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Try ModelScope when the Hugging Face download fails.",
    )
    group.add_argument(
        "--t5_tokenizer_modelscope_repo_id",
        type=str,
        default="nv-community/Cosmos-Predict2-2B-Text2Image",
        help="ModelScope repo of the fallback download.",
    )
    group.add_argument("--t5_tokenizer_modelscope_revision", type=str, default="master", help="ModelScope revision.")
    group.add_argument(
        "--t5_tokenizer_modelscope_subfolder", type=str, default="tokenizer", help="ModelScope subfolder."
    )
    group.add_argument(
        "--qwen3_max_token_length",
        type=int,
        default=None,
        help=f"kohya's Qwen3 caption truncation (its default 512) {no_effect_lengths}",
    )
    group.add_argument(
        "--t5_max_token_length",
        type=int,
        default=None,
        help=f"kohya's T5 caption truncation (its default 512) {no_effect_lengths}",
    )


def add_anima_arguments(parser: argparse.ArgumentParser) -> None:
    """Add Anima's options and aliases to a parser from `library.args.build_parser`, and Anima's defaults."""
    add_aliases(parser, "--pretrained_model_name_or_path", "--anima_transformer")
    group = parser.add_argument_group("Anima")
    group.add_argument(
        "--qwen3",
        "--qwen",
        type=str,
        default=None,
        help="Qwen3-0.6B text encoder: a folder or a single .safetensors file.",
    )
    _t5_options(group, f"{NO_EFFECT}: captions are never truncated, as in ComfyUI, where the LoRA is used.")
    group.add_argument(
        "--llm_adapter_path",
        type=str,
        default=None,
        help="Separate llm_adapter weights (default: the adapter inside the DiT file).",
    )
    group.add_argument(
        "--train_norm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Also train the norm scales (saved as <module>.w_norm).",
    )
    group.add_argument("--split_attn", action="store_true", help="kohya's attention one sample at a time (for xformers); not needed "
                       "with SDPA, which takes the whole batch (a warning says so).")
    for part in ("self_attn", "cross_attn", "mlp", "mod"):
        group.add_argument(
            f"--{part}_lr",
            type=float,
            default=None,
            help=f"kohya full fine-tuning LR for {part} layers {NO_EFFECT} on LoRA training.",
        )
    group.add_argument(
        "--config",
        action=_OldConfigFlag,
        metavar="ROOT_STYLE_TOML",
        help=f"Old root-style flag: refused with the command that converts the file ({ROOT_STYLE_HINT}).",
    )
    add_seed_arguments(parser)
    add_pivotal_arguments(parser)
    parser.set_defaults(**ANIMA_DEFAULTS)
    annotate_help(parser)
