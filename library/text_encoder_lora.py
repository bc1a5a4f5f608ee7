"""Whether a run trains the text encoder's LoRA, the DiT's, or both: kohya's rule, decided once before training.

kohya trains a text-encoder LoRA unless `--network_train_unet_only` is given, and refuses to do so with cached text
outputs (a cached output was made by the encoder without the LoRA, so the LoRA would get no gradient and the DiT would
learn from conditioning the LoRA no longer produces). Here a run that caches text outputs trains the DiT only, as if
`--network_train_unet_only` were given (one info line says so); asking for the text encoder with cached outputs
(`--network_train_text_encoder_only`) is refused with kohya's reason.
"""

from __future__ import annotations

import logging
from argparse import Namespace
from typing import Any

from library.errors import ConfigError

logger = logging.getLogger(__name__)

DIT_ONLY = "DiT"  # also what a state from before text-encoder LoRAs trained (library/state.py)
_DECIDED = "_trains_text_encoder"  # set on args by the first call: later changes to the cache options do not count


def caches_text(args: Namespace) -> bool:
    return bool(getattr(args, "cache_text_encoder_outputs", False)
                or getattr(args, "cache_text_encoder_outputs_to_disk", False))


def trains_text_encoder(args: Namespace) -> bool:
    """The choice as the user made it, fixed at the first call (the start-up checks): the trainer later turns text
    caching off for captions that change every step (shuffle_caption, ...), which must not start training Qwen3."""
    if not hasattr(args, _DECIDED):
        setattr(args, _DECIDED, not getattr(args, "network_train_unet_only", False) and not caches_text(args))
    return bool(getattr(args, _DECIDED))


def trains_denoiser(args: Namespace) -> bool:
    return not getattr(args, "network_train_text_encoder_only", False)


def trained_parts(args: Namespace) -> str:
    """What a state records (a resume must train the same parts: the network's tensors differ)."""
    if not trains_text_encoder(args):
        return DIT_ONLY
    return "Qwen3 text encoder" if not trains_denoiser(args) else "DiT + Qwen3 text encoder"


def check_trained_parts(args: Namespace) -> None:
    """Start-up check: the parts asked for can train together with the cache options."""
    unet_only, te_only = getattr(args, "network_train_unet_only", False), not trains_denoiser(args)
    if unet_only and te_only:
        raise ConfigError("--network_train_unet_only and --network_train_text_encoder_only together train nothing; "
                          "give one of them (or neither, to train both).")
    if te_only and caches_text(args):
        raise ConfigError("--network_train_text_encoder_only cannot be used with --cache_text_encoder_outputs"
                          "(_to_disk): a text-encoder LoRA cannot be trained from cached text-encoder outputs (they "
                          "were made without it), as in kohya. Drop the text cache option (cache_text_encoder_outputs"
                          " = false in the TOML).")
    trains_text_encoder(args)


def describe_trained_parts(args: Namespace) -> str:
    """One line for the log: what trains and why."""
    if not trains_text_encoder(args):
        why = ("--network_train_unet_only" if getattr(args, "network_train_unet_only", False)
               else "text-encoder outputs are cached")
        return (f"training the DiT LoRA only ({why}; kohya's rule trains a Qwen3 text-encoder LoRA too when text "
                f"outputs are not cached and --network_train_unet_only is not given)")
    if not trains_denoiser(args):
        return "training the Qwen3 text-encoder LoRA only (--network_train_text_encoder_only)"
    return ("training the DiT LoRA and a Qwen3 text-encoder LoRA (text outputs are not cached; kohya's rule; "
            "--network_train_unet_only trains the DiT only)")


def encode_step_text(trainer: Any, args: Namespace, models: Any, captions: list[str]) -> list[dict[str, Any]]:
    """A training step's text encodings: with gradients when the text encoder's LoRA trains, else without."""
    import torch  # here: the start-up checks import this module before torch

    with torch.set_grad_enabled(trains_text_encoder(args)):
        return trainer.encode_text(args, models, captions)


def checkpoint_text_encoders(encoders: list[Any]) -> None:
    """kohya's --gradient_checkpointing covers a trained text encoder too. Non-reentrant, so the LoRA inside each
    layer gets its gradients although the layer's input needs none (kohya works around the reentrant form by making
    Qwen3's first weight require grad); transformers checkpoints only in training mode, which changes nothing else in
    Qwen3 (it has no dropout)."""
    for encoder in encoders:
        if getattr(encoder, "supports_gradient_checkpointing", False):
            encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            encoder.train()
