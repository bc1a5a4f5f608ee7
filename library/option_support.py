"""kohya options this trainer accepts but does not act on: one table, so `--help` says so and a run that sets one is
told at start-up (a warning for what is harmless to ignore, an error for what the user would wrongly rely on)."""

from __future__ import annotations

import argparse
import logging

from library.errors import ConfigError
from library.text_encoder_lora import check_trained_parts

logger = logging.getLogger(__name__)

NO_EFFECT = {
    "highvram": "memory placement is decided per option here",
    "disable_mmap_load_safetensors": "model files are read tensor by tensor already",
    "vae_disable_cache": "diffusers' VAE clears its frame cache itself for single images",
    "llm_adapter_path": "the llm_adapter is read from the DiT file, as in kohya",
}
# kohya options for SD models whose help already says "(no effect for Anima)" (library.arguments.types.NO_EFFECT):
# warned at start-up with the reason. kohya's flux and anima trainers ignore them just as silently.
_SD_NOISE = "an SD (epsilon-prediction) noise tweak; Anima's flow-matching noise is drawn unchanged"
_SD_LOSS = "an SD loss weighting by the noise schedule's SNR; for flow matching use --weighting_scheme"
_SD_TEXT = "SD's CLIP text encoder; Anima's captions go through Qwen3 and T5 whole"
_FULL_FT = "kohya's full fine-tuning learning rates; for a LoRA give per-module rates with --network_args network_reg_lrs"
FLOW_NO_EFFECT = {
    "v2": "Anima is one model, not SD 2.x",
    "v_parameterization": "Anima is a flow-matching model; it predicts the velocity already",
    "tokenizer_cache_dir": "the Qwen3 and T5 tokenizers are bundled; none is downloaded",
    "max_token_length": _SD_TEXT, "clip_skip": _SD_TEXT,
    "noise_offset": _SD_NOISE, "noise_offset_random_strength": _SD_NOISE, "multires_noise_iterations": _SD_NOISE,
    "adaptive_noise_scale": _SD_NOISE,
    "zero_terminal_snr": "it rescales SD's beta schedule; flow matching has none (pure noise is reached already)",
    "min_timestep": "SD's integer timesteps; Anima samples noise levels with --timestep_sampling",
    "max_timestep": "SD's integer timesteps; Anima samples noise levels with --timestep_sampling",
    "min_snr_gamma": _SD_LOSS, "debiased_estimation_loss": _SD_LOSS,
    "scale_v_pred_loss_like_noise_pred": _SD_LOSS, "v_pred_like_loss": _SD_LOSS,
    "weighted_captions": "captions are literal text, as in ComfyUI",
    "mem_eff_attn": "SD's attention; Anima's runs through SDPA, which includes a memory-efficient kernel (--attn_mode "
                    "mem_efficient forces it)",
    "qwen3_max_token_length": "captions are never truncated, as in ComfyUI",
    "t5_max_token_length": "captions are never truncated, as in ComfyUI",
    "self_attn_lr": _FULL_FT, "cross_attn_lr": _FULL_FT, "mlp_lr": _FULL_FT, "mod_lr": _FULL_FT,
    "persistent_data_loader_workers": "workers restart each epoch so that the epoch's data order and caption "
                                      "augmentation reach them (a resumed run depends on it)",
}
REFUSED = {
    "dataset_class": "custom dataset classes are not supported; use --dataset_config",
    "initial_epoch": "use --resume with a state folder, which restores the step exactly",
    "initial_step": "use --resume with a state folder, which restores the step exactly",
    "skip_until_initial_step": "use --resume with a state folder, which restores the data position exactly",
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
    for dest, reason in (NO_EFFECT | FLOW_NO_EFFECT).items():
        if getattr(args, dest, None) not in (None, False):
            logger.warning("--%s has no effect here: %s.", dest, reason)
    check_option_pairs(args)


def check_option_pairs(args: argparse.Namespace) -> None:
    """Options that act only together with another: refused as kohya refuses them, or warned when nothing would
    happen (a prompt file with no time to sample at)."""
    check_trained_parts(args)
    for full, precision in (("full_bf16", "bf16"), ("full_fp16", "fp16")):
        if getattr(args, full, False) and getattr(args, "mixed_precision", None) != precision:
            raise ConfigError(f"--{full} needs --mixed_precision {precision} (got {args.mixed_precision}), as in kohya: "
                              f"add --mixed_precision {precision}, or drop --{full}.")
    when = [f"--{name}" for name in ("sample_every_n_steps", "sample_every_n_epochs", "sample_at_first")
            if getattr(args, name, None)]
    if getattr(args, "sample_prompts", None) and not when:
        logger.warning("--sample_prompts %s: no sample images will be made, because no time to sample is set; add "
                       "--sample_every_n_steps N, --sample_every_n_epochs N or --sample_at_first.", args.sample_prompts)
    elif when and not getattr(args, "sample_prompts", None):
        logger.warning("%s: no sample images will be made without --sample_prompts FILE.", " and ".join(when))
