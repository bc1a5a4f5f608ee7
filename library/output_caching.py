"""Caching the latents and text-encoder outputs before training, and the cache options' checks.

Why apart from the trainer: the checks decide from the dataset alone (before any model loads) whether caching can
hold, and the caching itself runs through the model's hooks, so the generic trainer only calls these two.
"""

from __future__ import annotations

import logging
from argparse import Namespace
from typing import Any

import torch

from library.dataset.caching import check_latent_cache_names
from library.errors import ConfigError

logger = logging.getLogger(__name__)


def check_cache_options(args: Namespace, dataset: Any, cache_suffix: str) -> None:
    """`*_to_disk` implies caching; an image changed every step refuses latent caching, a caption changed every
    step turns text caching off with a warning (kohya's rule)."""
    if args.cache_latents_to_disk:
        args.cache_latents = True
    if args.cache_text_encoder_outputs_to_disk:
        args.cache_text_encoder_outputs = True
    if args.cache_latents_to_disk:
        validation = dataset.validation.all_samples() if dataset.validation is not None else []
        check_latent_cache_names(dataset.all_samples() + validation, cache_suffix)
    if args.cache_latents and (blockers := dataset.latent_cache_blockers()):
        raise ConfigError("--cache_latents cannot be used with " + ", ".join(blockers)
                          + ": these change the image every step. Turn them off, or drop --cache_latents.")
    if args.cache_text_encoder_outputs and (blockers := dataset.text_cache_blockers()):
        logger.warning("text-encoder outputs are NOT cached because the caption changes every step (%s); "
                       "the text encoder stays loaded.", ", ".join(blockers))
        args.cache_text_encoder_outputs = False
        args.cache_text_encoder_outputs_to_disk = False


def cache_outputs(trainer: Any, args: Namespace, accelerator: Any, models: Any, dataset: Any) -> None:
    """Fill the caches of the training and validation sets, each process its shard, through the trainer's
    `encode_images_to_latents` / `encode_text`; the text encoders are released once their outputs are cached."""
    shard = {"process_index": accelerator.process_index, "num_processes": accelerator.num_processes,
             "barrier": accelerator.wait_for_everyone, "suffix": trainer.cache_suffix,
             "trust": bool(args.skip_cache_check)}
    groups = [dataset] + ([dataset.validation] if dataset.validation is not None else [])
    if args.cache_latents:
        with torch.no_grad():
            for group in groups:
                group.cache_latents(lambda images: trainer.encode_images_to_latents(args, models, images),
                                    trainer.latent_cache_identity(args), to_disk=bool(args.cache_latents_to_disk),
                                    batch_size=args.vae_batch_size or 1, **shard)
    if args.cache_text_encoder_outputs:
        with torch.no_grad():
            for group in groups:
                group.cache_text(lambda captions: trainer.encode_text(args, models, captions),
                                 trainer.text_cache_identity(args),
                                 to_disk=bool(args.cache_text_encoder_outputs_to_disk),
                                 batch_size=args.text_encoder_batch_size or 8, **shard)
        trainer.release_text_encoders(args, models)
