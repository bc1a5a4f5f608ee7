"""Anima's part of start-up that needs no torch: the parser, and the model files checked from their headers.

`anima_train_network.main` parses and checks with these before it imports the trainer (and torch with it);
`AnimaNetworkTrainer.assert_extra_args` calls them again (a trainer can be driven without `main`).
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from pathlib import Path

from library.anima.args import add_anima_arguments
from library.anima.detect import cross_check, identify
from library.args import build_parser
from library.errors import ConfigError, ModelFileError

EXPECTED_KINDS = {"dit": "an Anima DiT", "vae": "the Qwen-Image VAE", "qwen3": "the Qwen3-0.6B text encoder"}


def anima_parser() -> ArgumentParser:
    """The generic groups plus Anima's options."""
    parser = build_parser("Train a LoRA / LoKr network (kohya sd-scripts compatible).")
    add_anima_arguments(parser)
    return parser


def check_model_paths(args: Namespace) -> None:
    """The three model paths are set and exist; a given T5 tokenizer path is a folder."""
    for option, value in (("--pretrained_model_name_or_path (--anima_transformer)",
                           args.pretrained_model_name_or_path), ("--vae", args.vae), ("--qwen3 (--qwen)", args.qwen3)):
        if not value:
            raise ConfigError(f"{option} is not set: give the path of the model file.")
        if not Path(value).exists():
            raise ConfigError(f"{option} {value}: no such file or folder.")
    if args.t5_tokenizer_path and not Path(args.t5_tokenizer_path).is_dir():
        raise ConfigError(f"--t5_tokenizer_path (--t5_tokenizer_dir) {args.t5_tokenizer_path}: not a folder. "
                          f"Leave it unset to use the bundled T5 tokenizer.")


def check_model_files(args: Namespace) -> None:
    """From the files' headers alone (no torch): the DiT has every tensor in its shape, --vae is a VAE, --qwen3 a
    Qwen3, and the DiT's adapter reads that Qwen3's width (what tools/check_anima_models.py tells), so a swapped
    or damaged file fails in the first second, not after the dataset and DiT load."""
    findings = []
    for option, path, kind in (("--pretrained_model_name_or_path", args.pretrained_model_name_or_path, "dit"),
                               ("--vae", args.vae, "vae"), ("--qwen3", args.qwen3, "qwen3")):
        finding = identify(path)
        if finding.kind != kind or not finding.loads:
            raise ModelFileError(path, f"the file for {option} ({EXPECTED_KINDS[kind]})", finding.summary,
                                 finding.fix or f"Pass {EXPECTED_KINDS[kind]} with {option}.")
        findings.append(finding)
    if problems := cross_check(findings):
        raise ConfigError(f"{args.pretrained_model_name_or_path} and {args.qwen3}: " + "; ".join(problems) + ".")
