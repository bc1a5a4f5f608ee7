"""kohya's `ss_*` metadata for saved LoRA files (spec kohya-cli.md section 4.1).

Values are strings, as kohya writes them, so tools that read kohya files read ours.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

from library.errors import ConfigError

MINIMUM_KEYS = ("ss_v2", "ss_base_model_version", "ss_network_module", "ss_network_dim", "ss_network_alpha",
                "ss_network_args")

_ARG_KEYS = (
    "output_name", "learning_rate", "text_encoder_lr", "unet_lr", "gradient_checkpointing",
    "gradient_accumulation_steps", "max_train_steps", "lr_warmup_steps", "lr_scheduler", "network_module",
    "network_dim", "network_alpha", "network_dropout", "mixed_precision", "full_fp16", "seed", "lowram",
    "noise_offset", "training_comment", "max_grad_norm", "caption_dropout_rate",
    "caption_dropout_every_n_epochs", "caption_tag_dropout_rate", "prior_loss_weight", "min_snr_gamma",
    "scale_weight_norms", "ip_noise_gamma", "loss_type", "huber_schedule", "huber_scale", "huber_c", "fp8_base",
    "fp8_base_unet", "cache_latents",
)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() or "(unknown)"
    except (OSError, subprocess.SubprocessError):
        return "(unknown)"


def base_metadata(args: Namespace, model_version: str, num_epochs: int, started_at: float) -> dict[str, str]:
    """The keys known at start; per-save keys are added by `per_save_metadata`."""
    meta: dict[str, Any] = {f"ss_{key}": getattr(args, key, None) for key in _ARG_KEYS}
    meta.update({
        "ss_session_id": random.randint(0, 2**32),
        "ss_training_started_at": started_at,
        "ss_num_epochs": num_epochs,
        "ss_v2": False,
        "ss_base_model_version": model_version,
        "ss_sd_scripts_commit_hash": git_commit(),
        "ss_full_fp16": bool(getattr(args, "full_fp16", False)),
    })
    if getattr(args, "network_args", None):
        meta["ss_network_args"] = json.dumps(parse_network_args(args.network_args))
    meta["ss_optimizer"] = getattr(args, "_optimizer_description", getattr(args, "optimizer_type", ""))
    if getattr(args, "no_metadata", False):
        meta = {key: value for key, value in meta.items() if key in MINIMUM_KEYS}
    return {key: str(value) for key, value in meta.items()}


def per_save_metadata(base: dict[str, str], step: int, epoch: int) -> dict[str, str]:
    meta = dict(base)
    meta.update({"ss_training_finished_at": str(time.time()), "ss_steps": str(step), "ss_epoch": str(epoch)})
    return meta


def parse_network_args(items: list[str] | None) -> dict[str, str]:
    """kohya splits each `key=value` at the first '='; values stay strings for the network to parse."""
    parsed: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--network_args {item!r}: expected key=value, e.g. --network_args \"train_norm=False\".")
        parsed[key.strip()] = value.strip()
    return parsed
