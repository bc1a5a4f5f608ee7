"""kohya options this trainer accepts but does not act on: one table, so `--help` says so and a run that sets one is
told at start-up (a warning for what is harmless to ignore, an error for what the user would wrongly rely on)."""

from __future__ import annotations

import argparse
import logging

from library.errors import ConfigError

logger = logging.getLogger(__name__)

NO_EFFECT = {
    "highvram": "memory placement is decided per option here",
    "disable_mmap_load_safetensors": "model files are read tensor by tensor already",
    "vae_disable_cache": "diffusers' VAE clears its frame cache itself for single images",
    "split_attn": "SDPA handles the whole batch; xformers is not used",
    "llm_adapter_path": "the llm_adapter is read from the DiT file, as in kohya",
    "network_train_unet_only": "only the DiT (and its llm_adapter) is ever trained",
}
REFUSED = {
    "network_train_text_encoder_only": "Qwen3 LoRA training is not supported; train the DiT",
    "dataset_class": "custom dataset classes are not supported; use --dataset_config",
    "initial_epoch": "use --resume with a state folder, which restores the step exactly",
    "initial_step": "use --resume with a state folder, which restores the step exactly",
    "skip_until_initial_step": "use --resume with a state folder, which restores the data position exactly",
    "fused_backward_pass": "not supported; use --gradient_checkpointing or --blocks_to_swap to save memory",
    "huggingface_repo_id": "uploads are not supported; upload the output folder with `huggingface-cli upload`",
    "save_state_to_huggingface": "uploads are not supported; upload the state folder with `huggingface-cli upload`",
    "resume_from_huggingface": "download the state folder first, then --resume it",
    "async_upload": "uploads are not supported",
}


def annotate_help(parser: argparse.ArgumentParser) -> None:
    """Append what the table says to each such option's help, so `--help` and docs/options.md tell the truth."""
    for action in parser._actions:
        note = (f"(No effect here: {NO_EFFECT[action.dest]}.)" if action.dest in NO_EFFECT else
                f"(Not supported: {REFUSED[action.dest]}.)" if action.dest in REFUSED else None)
        if note and not (action.help or "").endswith(note):  # idempotent: parsers are extended in two steps
            action.help = f"{action.help} {note}"


def check_option_support(args: argparse.Namespace) -> None:
    """Warn for set options that have no effect; refuse the ones a user would rely on."""
    for dest, reason in REFUSED.items():
        if getattr(args, dest, None) not in (None, False):
            raise ConfigError(f"--{dest}: {reason}.")
    for dest, reason in NO_EFFECT.items():
        if getattr(args, dest, None) not in (None, False):
            logger.warning("--%s has no effect here: %s.", dest, reason)
